//! S3, GCS and Azure listings that go past a name no `object_store` path can hold.
//!
//! The clouds accept keys with a newline or another control character, an empty segment (`a//b`) or a `.`/`..`
//! segment; a tool other than Daedalus may write one. `object_store` parses every key of a list page into a
//! `Path` and fails the whole page for one it refuses, so a single such object ended every listing of its node's
//! prefix (MinIO and Azurite both serve such keys, as S3 and Azure do). Two pieces keep the listing going:
//!
//! - [`FilteringConnector`], the HTTP connector of the cloud clients, takes those entries out of each list
//!   response (S3's and GCS's XML `ListBucketResult`: `Contents` and `CommonPrefixes`; Azure's
//!   `EnumerationResults`: `Blob` and `BlobPrefix`) before `object_store` parses it, leaving every other byte of
//!   the response as it was, page tokens included;
//! - [`TolerantListing`], the store the sidecar uses, lists page by page through the client's
//!   [`PaginatedListStore`] with a [`SkipReport`] in each request's extensions, where the connector writes what it
//!   took out; it hands those to its caller in band (see [`super::skipped`]).
//!
//! Everything else passes through untouched.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::{
    ClientOptions, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};
use quick_xml::events::Event;

use super::skipped::{SkipReason, SkippedEntries, SkippedEntry, is_valid_key};
use crate::sync::lock;

/// Where the connector writes the entries it took out of the list responses of one listing.
#[derive(Debug, Clone, Default)]
pub struct SkipReport(Arc<Mutex<Vec<SkippedEntry>>>);

impl SkipReport {
    fn push(&self, entry: SkippedEntry) {
        lock(&self.0).push(entry);
    }

    fn take(&self) -> Vec<SkippedEntry> {
        std::mem::take(&mut *lock(&self.0))
    }
}

/// The cloud clients' HTTP connector: `object_store`'s own (reqwest, with the client options), with list
/// responses filtered.
#[derive(Debug, Default, Clone, Copy)]
pub struct FilteringConnector;

impl HttpConnector for FilteringConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(ListFilter { inner }))
    }
}

#[derive(Debug)]
struct ListFilter {
    inner: HttpClient,
}

#[async_trait]
impl HttpService for ListFilter {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let format = ListFormat::of(&request);
        let report = request.extensions().get::<SkipReport>().cloned();
        let response = self.inner.execute(request).await?;
        let Some(format) = format.filter(|_| response.status().is_success()) else {
            return Ok(response);
        };
        let (mut parts, body) = response.into_parts();
        let body = body.bytes().await?;
        let Some((kept, skipped)) = filter(format, &body) else {
            return Ok(HttpResponse::from_parts(parts, body.into()));
        };
        parts.headers.remove(http::header::CONTENT_LENGTH);
        for name in skipped {
            let entry = SkippedEntry::new(name.as_bytes(), SkipReason::NotAKey);
            match &report {
                Some(report) => report.push(entry),
                // A listing that does not ask for the report: the warning at least.
                None => tracing::warn!(
                    key = %entry.name,
                    "skipping a listed object whose name cannot be a key"
                ),
            }
        }
        Ok(HttpResponse::from_parts(parts, Bytes::from(kept).into()))
    }
}

/// The list responses the filter reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListFormat {
    /// S3's `ListObjectsV2` (`list-type=2`), which GCS's XML API answers too.
    S3,
    /// Azure's List Blobs (`restype=container&comp=list`).
    Azure,
}

impl ListFormat {
    fn of(request: &HttpRequest) -> Option<ListFormat> {
        if request.method() != http::Method::GET {
            return None;
        }
        let query = request.uri().query()?;
        let has = |pair: &str| query.split('&').any(|item| item == pair);
        if has("list-type=2") {
            Some(ListFormat::S3)
        } else if has("comp=list") && has("restype=container") {
            Some(ListFormat::Azure)
        } else {
            None
        }
    }

    /// The child element holding the name of an entry element (an object or a common prefix), if `element` is one.
    fn name_of(self, element: &[u8]) -> Option<&'static [u8]> {
        match (self, element) {
            (ListFormat::S3, b"Contents") => Some(b"Key"),
            (ListFormat::S3, b"CommonPrefixes") => Some(b"Prefix"),
            (ListFormat::Azure, b"Blob" | b"BlobPrefix") => Some(b"Name"),
            _ => None,
        }
    }
}

/// An entry element being read.
struct Entry {
    /// Where its start tag begins.
    start: usize,
    name_tag: &'static [u8],
    /// Elements open inside it.
    depth: usize,
    in_name: bool,
    name: String,
}

/// The response without the entries whose names cannot be keys, and those names; `None` when there is nothing to
/// take out, or the response cannot be read (then `object_store` reports it as it would have).
fn filter(format: ListFormat, body: &[u8]) -> Option<(Vec<u8>, Vec<String>)> {
    let text = std::str::from_utf8(body).ok()?;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut dropped: Vec<Range<usize>> = Vec::new();
    let mut names = Vec::new();
    let mut entry: Option<Entry> = None;
    loop {
        let before = usize::try_from(reader.buffer_position()).ok()?;
        let event = reader.read_event().ok()?;
        match event {
            Event::Eof => break,
            Event::Start(start) => match &mut entry {
                None => {
                    if let Some(name_tag) = format.name_of(start.local_name().as_ref()) {
                        entry = Some(Entry {
                            start: before,
                            name_tag,
                            depth: 0,
                            in_name: false,
                            name: String::new(),
                        });
                    }
                }
                Some(open) => {
                    open.depth += 1;
                    open.in_name = open.depth == 1 && start.local_name().as_ref() == open.name_tag;
                }
            },
            Event::End(_) => match entry.take() {
                Some(closed) if closed.depth == 0 && !is_valid_key(&closed.name) => {
                    let end = usize::try_from(reader.buffer_position()).ok()?;
                    dropped.push(closed.start..end);
                    names.push(closed.name);
                }
                // A whole entry whose name is a key: it stays.
                Some(closed) if closed.depth == 0 => {}
                Some(mut open) => {
                    open.depth -= 1;
                    open.in_name = false;
                    entry = Some(open);
                }
                None => {}
            },
            Event::Text(text) => {
                if let Some(open) = entry.as_mut().filter(|open| open.in_name) {
                    open.name.push_str(&text.decode().ok()?);
                }
            }
            Event::CData(data) => {
                if let Some(open) = entry.as_mut().filter(|open| open.in_name) {
                    open.name.push_str(&data.decode().ok()?);
                }
            }
            Event::GeneralRef(reference) => {
                if let Some(open) = entry.as_mut().filter(|open| open.in_name) {
                    match reference.resolve_char_ref().ok()? {
                        Some(c) => open.name.push(c),
                        None => open
                            .name
                            .push_str(quick_xml::escape::resolve_predefined_entity(
                                &reference.decode().ok()?,
                            )?),
                    }
                }
            }
            _ => {}
        }
    }
    if dropped.is_empty() {
        return None;
    }
    let mut kept = Vec::with_capacity(body.len());
    let mut from = 0;
    for range in dropped {
        kept.extend_from_slice(&body[from..range.start]);
        from = range.end;
    }
    kept.extend_from_slice(&body[from..]);
    Some((kept, names))
}

/// A cloud store whose listings skip and report the entries [`FilteringConnector`] took out, rather than
/// dropping them silently. Everything but listing goes straight to the store.
#[derive(Debug)]
pub struct TolerantListing<S> {
    inner: Arc<S>,
}

impl<S> TolerantListing<S> {
    pub fn new(inner: S) -> Self {
        TolerantListing {
            inner: Arc::new(inner),
        }
    }
}

impl<S: std::fmt::Display> std::fmt::Display for TolerantListing<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

/// A listing's prefix as the paginated API takes it: with its trailing delimiter, as `ObjectStore::list` adds it.
fn page_prefix(prefix: Option<&Path>) -> Option<String> {
    prefix
        .filter(|prefix| !prefix.as_ref().is_empty())
        .map(|prefix| format!("{prefix}/"))
}

/// One page request carrying a fresh report.
fn page_options(token: Option<String>, delimiter: bool) -> (PaginatedListOptions, SkipReport) {
    let report = SkipReport::default();
    let mut options = PaginatedListOptions {
        page_token: token,
        delimiter: delimiter.then_some(std::borrow::Cow::Borrowed("/")),
        ..Default::default()
    };
    options.extensions.insert(report.clone());
    (options, report)
}

#[async_trait]
impl<S> ObjectStore for TolerantListing<S>
where
    S: ObjectStore + PaginatedListStore,
{
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let inner = Arc::clone(&self.inner);
        let prefix = page_prefix(prefix);
        // `Some(token)` while there are pages to read (the first has no token); `None` once done.
        stream::unfold(Some(None), move |next: Option<Option<String>>| {
            let inner = Arc::clone(&inner);
            let prefix = prefix.clone();
            async move {
                let token = next?;
                let (options, report) = page_options(token, false);
                match inner.list_paginated(prefix.as_deref(), options).await {
                    Ok(page) => {
                        let mut items: Vec<object_store::Result<ObjectMeta>> = report
                            .take()
                            .into_iter()
                            .map(|entry| Err(entry.into_error()))
                            .collect();
                        items.extend(page.result.objects.into_iter().map(Ok));
                        Some((stream::iter(items), page.page_token.map(Some)))
                    }
                    Err(error) => Some((stream::iter(vec![Err(error)]), None)),
                }
            }
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let prefix = page_prefix(prefix);
        let mut common_prefixes = std::collections::BTreeSet::new();
        let mut objects = Vec::new();
        let mut skipped = Vec::new();
        let mut token = None;
        loop {
            let (options, report) = page_options(token, true);
            let page = self
                .inner
                .list_paginated(prefix.as_deref(), options)
                .await?;
            skipped.extend(report.take());
            common_prefixes.extend(page.result.common_prefixes);
            objects.extend(page.result.objects);
            match page.page_token {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        let mut result = ListResult {
            common_prefixes: common_prefixes.into_iter().collect(),
            objects,
            extensions: Default::default(),
        };
        if !skipped.is_empty() {
            result.extensions.insert(SkippedEntries(skipped));
        }
        Ok(result)
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_refused_keys_out_of_an_s3_page_and_leaves_the_rest_as_it_was() {
        let page = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>b</Name><Prefix>c/</Prefix><KeyCount>4</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated><Contents><Key>c/a.json</Key><Size>3</Size></Contents><Contents><Key>c/bad&#xA;name.json</Key><Size>3</Size></Contents><Contents><Key><![CDATA[c/x//y]]></Key><Size>1</Size></Contents><Contents><Key>c/&lt;ok&gt; &amp; fine</Key><Size>2</Size></Contents><CommonPrefixes><Prefix>c/dir&#9;tab/</Prefix></CommonPrefixes><CommonPrefixes><Prefix>c/d/</Prefix></CommonPrefixes><NextContinuationToken>tok&amp;en</NextContinuationToken></ListBucketResult>";
        let (kept, names) = filter(ListFormat::S3, page.as_bytes()).expect("something to take out");
        assert_eq!(names, ["c/bad\nname.json", "c/x//y", "c/dir\ttab/"]);
        let kept = String::from_utf8(kept).unwrap();
        assert_eq!(
            kept,
            page.replace(
                "<Contents><Key>c/bad&#xA;name.json</Key><Size>3</Size></Contents>",
                ""
            )
            .replace(
                "<Contents><Key><![CDATA[c/x//y]]></Key><Size>1</Size></Contents>",
                ""
            )
            .replace(
                "<CommonPrefixes><Prefix>c/dir&#9;tab/</Prefix></CommonPrefixes>",
                ""
            )
        );
        // What object_store then reads of it: every other entry, and the page token.
        assert!(kept.contains("<Key>c/a.json</Key>") && kept.contains("tok&amp;en"));
    }

    #[test]
    fn takes_refused_names_out_of_an_azure_page() {
        let page = "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ServiceEndpoint=\"http://127.0.0.1/a\" ContainerName=\"b\"><Prefix/><Blobs><Blob><Name>c/bad\nname.json</Name><Properties><Content-Length>3</Content-Length></Properties><Metadata><Name>not the blob's name\n</Name></Metadata></Blob><Blob><Name>c/good.json</Name><Properties><Content-Length>3</Content-Length></Properties><Metadata><Name>x\n</Name></Metadata></Blob><BlobPrefix><Name>c/../</Name></BlobPrefix></Blobs><NextMarker/></EnumerationResults>";
        let (kept, names) =
            filter(ListFormat::Azure, page.as_bytes()).expect("something to take out");
        assert_eq!(names, ["c/bad\nname.json", "c/../"]);
        let kept = String::from_utf8(kept).unwrap();
        assert!(kept.contains("<Name>c/good.json</Name>"), "{kept}");
        assert!(
            !kept.contains("bad") && !kept.contains("BlobPrefix"),
            "{kept}"
        );
    }

    #[test]
    fn a_page_with_nothing_to_take_out_or_not_xml_is_left_alone() {
        let page = "<ListBucketResult><Contents><Key>a/b</Key></Contents></ListBucketResult>";
        assert!(filter(ListFormat::S3, page.as_bytes()).is_none());
        assert!(filter(ListFormat::S3, b"\xff\xfe not xml").is_none());
        assert!(filter(ListFormat::S3, b"<a><b></a>").is_none());
    }

    #[test]
    fn only_list_requests_are_read() {
        let request = |method: http::Method, uri: &str| {
            http::Request::builder()
                .method(method)
                .uri(uri)
                .body(object_store::client::HttpRequestBody::empty())
                .unwrap()
        };
        assert_eq!(
            ListFormat::of(&request(
                http::Method::GET,
                "http://h/b?delimiter=%2F&list-type=2&prefix=c%2F"
            )),
            Some(ListFormat::S3)
        );
        assert_eq!(
            ListFormat::of(&request(
                http::Method::GET,
                "http://h/a/b?restype=container&comp=list&prefix=c%2F"
            )),
            Some(ListFormat::Azure)
        );
        assert_eq!(
            ListFormat::of(&request(http::Method::GET, "http://h/b/key")),
            None
        );
        assert_eq!(
            ListFormat::of(&request(http::Method::PUT, "http://h/b?list-type=2")),
            None
        );
    }
}

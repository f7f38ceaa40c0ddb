//! Multipart uploads to a `file://` bucket: the parts written at their offsets into one temporary file beside the
//! object, renamed over it by `complete`, removed by `abort` or when the upload is dropped unfinished.

use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cap_std::fs::Dir;
use futures_util::FutureExt;
use object_store::path::Path;
use object_store::{MultipartUpload, PutPayload, PutResult, UploadPart};

use super::resolve::Key;
use super::{Error, blocking, failure, io_error, meta_of_std};
use crate::sync::lock;

/// A multipart upload: parts written at their offsets into one temporary file beside the object.
#[derive(Debug)]
pub(super) struct Upload {
    state: Arc<UploadState>,
    /// Where the next part goes.
    offset: u64,
    finished: bool,
}

#[derive(Debug)]
struct UploadState {
    dir: Dir,
    key: String,
    name: String,
    temporary: String,
    /// `None` once completed or aborted.
    file: Mutex<Option<std::fs::File>>,
}

impl Upload {
    /// The upload of `key`, into `temporary` (open as `file`) in `dir`, the object's directory.
    pub(super) fn new(dir: Dir, key: &Key<'_>, temporary: String, file: std::fs::File) -> Upload {
        Upload {
            state: Arc::new(UploadState {
                dir,
                key: key.text.to_string(),
                name: key.name.to_string(),
                temporary,
                file: Mutex::new(Some(file)),
            }),
            offset: 0,
            finished: false,
        }
    }
}

impl UploadState {
    fn take_file(&self) -> Option<std::fs::File> {
        lock(&self.file).take()
    }
}

#[async_trait]
impl MultipartUpload for Upload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let offset = self.offset;
        self.offset += data.content_length() as u64;
        let state = Arc::clone(&self.state);
        blocking(move || {
            let guard = lock(&state.file);
            let Some(file) = guard.as_ref() else {
                return Err(failure(
                    &state.key,
                    Error::Finished {
                        key: state.key.clone(),
                    },
                ));
            };
            let mut at = offset;
            for chunk in data.iter() {
                file.write_all_at(chunk, at)
                    .map_err(|error| failure(&state.key, io_error(&state.key, "write")(error)))?;
                at += chunk.len() as u64;
            }
            Ok(())
        })
        .boxed()
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.finished = true;
        let state = Arc::clone(&self.state);
        blocking(move || {
            let key = state.key.clone();
            let Some(file) = state.take_file() else {
                return Err(failure(&key, Error::Finished { key: key.clone() }));
            };
            let metadata = file
                .metadata()
                .map_err(|error| failure(&key, io_error(&key, "read metadata")(error)))?;
            drop(file);
            state
                .dir
                .rename(&state.temporary, &state.dir, &state.name)
                .map_err(|error| {
                    let _ = state.dir.remove_file(&state.temporary);
                    failure(&key, io_error(&key, "put the file in place")(error))
                })?;
            let location = Path::parse(&key).unwrap_or_default();
            Ok(PutResult {
                e_tag: meta_of_std(location, &metadata).e_tag,
                version: None,
                extensions: Default::default(),
            })
        })
        .await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.finished = true;
        let state = Arc::clone(&self.state);
        blocking(move || {
            if state.take_file().is_none() {
                return Err(failure(
                    &state.key,
                    Error::Finished {
                        key: state.key.clone(),
                    },
                ));
            }
            state
                .dir
                .remove_file(&state.temporary)
                .map_err(|error| failure(&state.key, io_error(&state.key, "remove")(error)))
        })
        .await
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Neither completed nor aborted: the temporary file must not stay.
        let state = Arc::clone(&self.state);
        let remove = move || {
            if state.take_file().is_some() {
                let _ = state.dir.remove_file(&state.temporary);
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

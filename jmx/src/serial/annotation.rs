//! Reading what a class's `writeObject` wrote: primitives from block data (which may be split across
//! segments) and objects, in order.

use super::de::Content;
use super::mutf8;

pub struct AnnotationReader<'a> {
    items: &'a [Content],
    index: usize,
    offset: usize,
}

impl<'a> AnnotationReader<'a> {
    pub fn new(items: &'a [Content]) -> Self {
        Self {
            items,
            index: 0,
            offset: 0,
        }
    }

    /// The next `N` bytes of block data, or `None` if the data ends or an object comes first.
    pub fn bytes<const N: usize>(&mut self) -> Option<[u8; N]> {
        let mut out = [0u8; N];
        self.fill(&mut out)?;
        Some(out)
    }

    fn fill(&mut self, out: &mut [u8]) -> Option<()> {
        let mut filled = 0;
        while filled < out.len() {
            let Content::Block(block) = self.items.get(self.index)? else {
                return None;
            };
            let available = &block[self.offset..];
            let take = available.len().min(out.len() - filled);
            out[filled..filled + take].copy_from_slice(&available[..take]);
            filled += take;
            self.offset += take;
            if self.offset == block.len() {
                self.index += 1;
                self.offset = 0;
            }
        }
        Some(())
    }

    pub fn u8(&mut self) -> Option<u8> {
        self.bytes::<1>().map(|[b]| b)
    }

    pub fn i32(&mut self) -> Option<i32> {
        self.bytes::<4>().map(i32::from_be_bytes)
    }

    pub fn i64(&mut self) -> Option<i64> {
        self.bytes::<8>().map(i64::from_be_bytes)
    }

    /// `DataOutput.writeUTF` data.
    pub fn utf(&mut self) -> Option<String> {
        let len = usize::from(u16::from_be_bytes(self.bytes::<2>()?));
        let mut bytes = vec![0u8; len];
        self.fill(&mut bytes)?;
        Some(mutf8::decode(&bytes))
    }

    /// The next object, or `None` if block data comes first or nothing is left.
    pub fn object(&mut self) -> Option<&'a Content> {
        let item = self.items.get(self.index)?;
        if matches!(item, Content::Block(_)) {
            return None;
        }
        self.index += 1;
        Some(item)
    }
}

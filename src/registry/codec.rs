//! A small, total binary codec for shared-data values. Values are read back by other
//! workers (and after a plugin update, by newer code), so decoding never trusts lengths and
//! never panics: anything unexpected decodes as `None`.

#[derive(Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    pub fn new() -> Writer {
        Writer(Vec::new())
    }
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes32(&mut self, v: &[u8; 32]) {
        self.0.extend_from_slice(v);
    }
    pub fn bytes16(&mut self, v: &[u8; 16]) {
        self.0.extend_from_slice(v);
    }
    /// A string of any length (tokens), u32 length first.
    pub fn long_str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
    }

    /// A string of at most 255 bytes, cut at a character boundary.
    pub fn short_str(&mut self, s: &str) {
        let mut end = s.len().min(255);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let cut = s.get(..end).unwrap_or_default();
        self.0.push(cut.len() as u8);
        self.0.extend_from_slice(cut.as_bytes());
    }
}

pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    pub fn bytes32(&mut self) -> Option<[u8; 32]> {
        self.take(32)?.try_into().ok()
    }
    pub fn bytes16(&mut self) -> Option<[u8; 16]> {
        self.take(16)?.try_into().ok()
    }
    pub fn short_str(&mut self) -> Option<String> {
        let n = self.u8()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }

    pub fn long_str(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

/// A shared-data value holding a list: version byte, u32 count, then the items. An empty
/// value is an empty list; `None` for another version or damaged bytes (each caller says
/// what that means for it). `cap` bounds the allocation a hostile count could ask for.
pub fn read_list<T>(
    bytes: &[u8],
    version: u8,
    cap: usize,
    mut item: impl FnMut(&mut Reader) -> Option<T>,
) -> Option<Vec<T>> {
    let mut r = Reader::new(bytes);
    if r.is_empty() {
        return Some(Vec::new());
    }
    if r.u8()? != version {
        return None;
    }
    let n = r.u32()? as usize;
    let mut v = Vec::with_capacity(n.min(cap));
    for _ in 0..n {
        v.push(item(&mut r)?);
    }
    Some(v)
}

/// The writing side of `read_list`.
pub fn write_list<T>(version: u8, items: &[T], mut item: impl FnMut(&mut Writer, &T)) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(version);
    w.u32(items.len() as u32);
    for i in items {
        item(&mut w, i);
    }
    w.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_truncation() {
        let mut w = Writer::new();
        w.u8(7);
        w.u32(9);
        w.u64(u64::MAX);
        w.bytes32(&[3; 32]);
        w.short_str("héllo");
        let mut r = Reader::new(&w.0);
        assert_eq!((r.u8(), r.u32(), r.u64()), (Some(7), Some(9), Some(u64::MAX)));
        assert_eq!(r.bytes32(), Some([3; 32]));
        assert_eq!(r.short_str().as_deref(), Some("héllo"));
        assert!(r.is_empty());
        for cut in 0..w.0.len() {
            let mut r = Reader::new(&w.0[..cut]);
            let all = (|| Some((r.u8()?, r.u32()?, r.u64()?, r.bytes32()?, r.short_str()?)))();
            assert!(all.is_none(), "decoded from {cut} bytes");
        }
    }

    #[test]
    fn long_strings_are_cut_at_a_char_boundary() {
        let s = "é".repeat(200); // 400 bytes
        let mut w = Writer::new();
        w.short_str(&s);
        let got = Reader::new(&w.0).short_str().unwrap();
        assert_eq!(got.len(), 254);
    }
}

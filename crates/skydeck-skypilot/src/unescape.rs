//! Reading JSON text that arrives as a JSON *string* (SkyPilot's `return_value`) without first
//! building the unescaped copy: the inner document is parsed straight from the escaped bytes.
//!
//! A 5,000-job queue or a 3,000-record cost report is several megabytes; materialising the
//! unescaped string would hold a second copy of it at the peak of every collection.

use std::io::{self, Read};

/// An `io::Read` over the *content* of a JSON string literal (without the quotes) that yields
/// the unescaped UTF-8 bytes.
pub struct Unescape<'a> {
    src: &'a [u8],
    pos: usize,
    pending: [u8; 4],
    pending_len: usize,
    pending_pos: usize,
}

impl<'a> Unescape<'a> {
    /// A reader over `escaped`, the bytes between the quotes of a JSON string.
    pub fn new(escaped: &'a [u8]) -> Self {
        Unescape {
            src: escaped,
            pos: 0,
            pending: [0; 4],
            pending_len: 0,
            pending_pos: 0,
        }
    }

    fn hex4(&self, at: usize) -> io::Result<u32> {
        let digits = self
            .src
            .get(at..at + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .ok_or_else(|| bad("truncated \\u escape"))?;
        u32::from_str_radix(digits, 16).map_err(|_| bad("bad \\u escape"))
    }

    /// Decodes the escape at `self.pos` into `pending` and advances past it.
    fn escape(&mut self) -> io::Result<()> {
        let kind = *self
            .src
            .get(self.pos + 1)
            .ok_or_else(|| bad("trailing backslash"))?;
        let byte = match kind {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let mut cp = self.hex4(self.pos + 2)?;
                let mut len = 6;
                if (0xD800..0xDC00).contains(&cp)
                    && self.src.get(self.pos + 6..self.pos + 8) == Some(b"\\u".as_slice())
                {
                    let low = self.hex4(self.pos + 8)?;
                    if (0xDC00..0xE000).contains(&low) {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                        len = 12;
                    }
                }
                let c = char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER);
                self.pending_len = c.encode_utf8(&mut self.pending).len();
                self.pending_pos = 0;
                self.pos += len;
                return Ok(());
            }
            _ => return Err(bad("unknown escape")),
        };
        self.pending[0] = byte;
        self.pending_len = 1;
        self.pending_pos = 0;
        self.pos += 2;
        Ok(())
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl Read for Unescape<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            if self.pending_pos < self.pending_len {
                buf[n] = self.pending[self.pending_pos];
                self.pending_pos += 1;
                n += 1;
                continue;
            }
            let rest = &self.src[self.pos..];
            if rest.is_empty() {
                break;
            }
            // Copy the run up to the next escape in one go.
            let run = rest.iter().position(|&b| b == b'\\').unwrap_or(rest.len());
            if run > 0 {
                let k = run.min(buf.len() - n);
                buf[n..n + k].copy_from_slice(&rest[..k]);
                n += k;
                self.pos += k;
                continue;
            }
            self.escape()?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(original: &str) {
        let literal = serde_json::to_string(original).unwrap();
        let mut out = String::new();
        Unescape::new(&literal.as_bytes()[1..literal.len() - 1])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, original);
    }

    #[test]
    fn unescapes_like_serde_json() {
        roundtrip(r#"[{"name": "a\"b", "path": "C:\\x", "tab": "	"}]"#);
        roundtrip("line\nbreak\r\u{8}\u{c}/slash");
        roundtrip("unicode: é 日本 🚀 \u{1}");
        roundtrip("");
        // serde_json escapes non-ASCII only when asked; check \u and surrogate pairs too.
        let mut out = String::new();
        Unescape::new(br"\u00e9\ud83d\ude80\u0041")
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "é🚀A");
        assert!(
            Unescape::new(br"\q")
                .read_to_string(&mut String::new())
                .is_err()
        );
    }

    #[test]
    fn tiny_reads_work() {
        let literal = serde_json::to_string("a\"bc\\d 🚀").unwrap();
        let mut r = Unescape::new(&literal.as_bytes()[1..literal.len() - 1]);
        let mut out = Vec::new();
        let mut b = [0u8; 1];
        while r.read(&mut b).unwrap() == 1 {
            out.push(b[0]);
        }
        assert_eq!(String::from_utf8(out).unwrap(), "a\"bc\\d 🚀");
    }
}

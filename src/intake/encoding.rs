//! The text encoding of a CSV file a person gives us. UTF-8 unless they say otherwise
//! (`--encoding cp1251`): Excel in a Russian or Kazakh locale saves "CSV" in Windows-1251,
//! and the bytes of a file cannot tell which of the two it is (most cp1251 text is also some
//! valid, wrong, UTF-8), so the encoding is never guessed.

use std::io::Read;

/// How a file's bytes are read as text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8, with or without a byte-order mark.
    #[default]
    Utf8,
    /// Windows-1251, what Excel in ru and kk locales saves as "CSV".
    Cp1251,
}

/// What to do about a file that is not UTF-8, said where one is found.
pub const NOT_UTF8_HELP: &str = "if Excel saved it as \"CSV\" (Windows-1251, as in Russian and \
     Kazakh locales), give --encoding cp1251, or save it again as \"CSV UTF-8 (Comma \
     delimited)\"";

impl Encoding {
    /// `input` as UTF-8: as it is, or decoded.
    pub fn reader(self, input: impl Read + Send + 'static) -> Box<dyn Read + Send> {
        match self {
            Self::Utf8 => Box::new(input),
            Self::Cp1251 => Box::new(Decode::new(input, encoding_rs::WINDOWS_1251)),
        }
    }
}

/// Raised by [`Decode`]: the file is not text in the encoding given.
#[derive(Debug)]
pub struct NotInEncoding(pub String);

impl std::fmt::Display for NotInEncoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotInEncoding {}

/// Bytes read from the file per step.
const CHUNK: usize = 16 * 1024;

/// Decodes a byte stream to UTF-8 as it is read, strictly: a byte the encoding has no
/// character for is an error naming its line, never a replacement character. (encoding_rs
/// decodes; its `_without_replacement` API reports such bytes instead of replacing them,
/// which the crates that wrap it as a reader do not offer.)
pub(crate) struct Decode<R> {
    inner: R,
    decoder: encoding_rs::Decoder,
    name: &'static str,
    raw: Vec<u8>,
    decoded: Vec<u8>,
    /// Where the next byte handed out sits in `decoded`.
    at: usize,
    /// Lines before the current chunk (the first line is 1).
    line: u64,
    started: bool,
    ended: bool,
}

impl<R: Read> Decode<R> {
    pub fn new(inner: R, encoding: &'static encoding_rs::Encoding) -> Self {
        Self {
            inner,
            decoder: encoding.new_decoder_without_bom_handling(),
            name: encoding.name(),
            raw: vec![0; CHUNK],
            decoded: Vec::new(),
            at: 0,
            line: 1,
            started: false,
            ended: false,
        }
    }

    fn invalid(message: String) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, NotInEncoding(message))
    }

    fn not_a_character(&self, line: u64, bytes: &[u8]) -> std::io::Error {
        Self::invalid(format!(
            "line {line}: the byte {} is not a character in {}; the file is in another \
             encoding (save it from Excel as \"CSV UTF-8 (Comma delimited)\" and give it \
             without --encoding)",
            hex_bytes(bytes),
            self.name
        ))
    }

    /// Decodes the next chunk into `self.decoded`.
    fn refill(&mut self) -> std::io::Result<()> {
        let n = loop {
            match self.inner.read(&mut self.raw) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        let raw = &self.raw[..n];
        if !self.started {
            self.started = true;
            if raw.starts_with(b"\xef\xbb\xbf") {
                return Err(Self::invalid(format!(
                    "the file starts with a UTF-8 byte-order mark, so it is UTF-8 text, not \
                     {}; give it without --encoding",
                    self.name
                )));
            }
        }
        let last = n == 0;
        let room = self
            .decoder
            .max_utf8_buffer_length_without_replacement(n)
            .ok_or_else(|| std::io::Error::other("a chunk too large to decode"))?;
        self.decoded.resize(room, 0);
        let (result, read, written) =
            self.decoder
                .decode_to_utf8_without_replacement(raw, &mut self.decoded, last);
        match result {
            encoding_rs::DecoderResult::InputEmpty => {}
            encoding_rs::DecoderResult::Malformed(bad, after) => {
                let end = read - usize::from(after);
                let start = end - usize::from(bad);
                let line = self.line + newlines(&raw[..start]);
                return Err(self.not_a_character(line, &raw[start..end]));
            }
            // The buffer is sized for the whole chunk.
            encoding_rs::DecoderResult::OutputFull => {
                return Err(std::io::Error::other("the decoding buffer was too small"));
            }
        }
        self.decoded.truncate(written);
        // The WHATWG tables encoding_rs follows give the bytes a code page leaves undefined
        // (0x98 in Windows-1251) the C1 control character of the same number, which no text
        // holds: such a byte is refused like an unmapped one.
        if let Some(at) = self
            .decoded
            .windows(2)
            .position(|pair| pair[0] == 0xC2 && (0x80..=0x9F).contains(&pair[1]))
        {
            let line = self.line + newlines(&self.decoded[..at]);
            return Err(self.not_a_character(line, &self.decoded[at + 1..at + 2]));
        }
        self.line += newlines(raw);
        self.at = 0;
        self.ended = last;
        Ok(())
    }
}

fn newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

fn hex_bytes(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("0x{b:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl<R: Read> Read for Decode<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.decoded.len() {
            if self.ended {
                return Ok(0);
            }
            self.refill()?;
        }
        let n = buf.len().min(self.decoded.len() - self.at);
        buf[..n].copy_from_slice(&self.decoded[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> std::io::Result<String> {
        let mut text = String::new();
        Encoding::Cp1251
            .reader(std::io::Cursor::new(bytes.to_vec()))
            .read_to_string(&mut text)?;
        Ok(text)
    }

    #[test]
    fn windows_1251_is_decoded_to_the_same_text() {
        let (bytes, _, _) =
            encoding_rs::WINDOWS_1251.encode("payment_id;note\r\n1001;возврат №5\r\n");
        assert_eq!(
            decode(&bytes).unwrap(),
            "payment_id;note\r\n1001;возврат №5\r\n"
        );
        // Longer than one chunk, with a character on the boundary.
        let long = "ж".repeat(3 * CHUNK + 1);
        let (bytes, _, _) = encoding_rs::WINDOWS_1251.encode(&long);
        assert_eq!(decode(&bytes).unwrap(), long);
    }

    #[test]
    fn a_byte_without_a_character_is_an_error_on_its_line_not_a_replacement() {
        let e = decode(b"payment_id\r\n1001\r\n10\x9802\r\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 3: the byte 0x98 is not a character in windows-1251; the file is in another \
             encoding (save it from Excel as \"CSV UTF-8 (Comma delimited)\" and give it \
             without --encoding)"
        );
    }

    #[test]
    fn a_utf8_file_with_a_byte_order_mark_is_not_read_as_cp1251() {
        let e = decode("\u{feff}payment_id\r\n".as_bytes()).unwrap_err();
        assert!(e.to_string().contains("it is UTF-8 text"), "{e}");
    }
}

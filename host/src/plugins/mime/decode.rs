//! A leaf part's decoded content: its transfer encoding undone, and for text its charset
//! converted to UTF-8. mail-parser's decoders do the work, the lenient ones it applies to
//! MIME parts, so content reads here as it reads in any mail-parser based reader.

use std::borrow::Cow;

use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::parsers::MessageStream;

/// The content with its Content-Transfer-Encoding undone. Identity encodings (7bit, 8bit,
/// binary, none, or one we do not know) are the raw bytes; base64 that is not base64 is
/// also kept raw, as mail-parser recovers it.
pub(crate) fn transfer_decoded<'a>(raw: &'a [u8], encoding: Option<&str>) -> Cow<'a, [u8]> {
    let mut stream = MessageStream::new(raw);
    let (end, bytes) = match encoding {
        Some("base64") => stream.decode_base64_mime(b""),
        Some("quoted-printable") => stream.decode_quoted_printable_mime(b""),
        _ => return Cow::Borrowed(raw),
    };
    if end == usize::MAX {
        Cow::Borrowed(raw)
    } else {
        bytes
    }
}

/// Whether a transfer encoding leaves the content as it is on the wire.
pub(crate) fn is_identity(encoding: Option<&str>) -> bool {
    !matches!(encoding, Some("base64" | "quoted-printable"))
}

/// Text in `charset` as UTF-8. UTF-8 and every charset mail-parser knows convert (invalid
/// sequences become U+FFFD); without a charset (US-ASCII by RFC 2045, where 8-bit text is in
/// practice Windows-1252) the text is taken as UTF-8 when it is valid and Windows-1252
/// otherwise. An unknown charset gives `None` unless the bytes are valid UTF-8: guessing
/// would make a rewrite destroy text.
pub(crate) fn to_utf8(bytes: &[u8], charset: Option<&str>) -> Option<String> {
    let is_utf8 = |c: &str| {
        let c: String = c
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        matches!(
            c.as_str(),
            "utf8" | "unicode11utf8" | "unicode20utf8" | "xunicode20utf8"
        )
    };
    match charset {
        Some(c) if is_utf8(c) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Some(c) => match charset_decoder(c.as_bytes()) {
            Some(decode) => Some(decode(bytes)),
            None => std::str::from_utf8(bytes).ok().map(str::to_string),
        },
        None => match std::str::from_utf8(bytes) {
            Ok(text) => Some(text.to_string()),
            Err(_) => charset_decoder(b"windows-1252").map(|decode| decode(bytes)),
        },
    }
}

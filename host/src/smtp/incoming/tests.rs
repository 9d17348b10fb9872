//! The incoming buffer: memory below the threshold, a mapped spill file above it, nothing
//! left on disk afterwards, the header-section cap.

use std::os::unix::fs::PermissionsExt;

use super::*;

fn id(s: &str) -> MessageId {
    MessageId(s.to_string())
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A message of `len` octets: a header section, then body lines.
fn message(len: usize) -> Vec<u8> {
    let mut m = b"Subject: test\r\n\r\n".to_vec();
    let line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n";
    while m.len() < len {
        m.extend_from_slice(line);
    }
    m.truncate(len);
    m
}

#[test]
fn a_small_message_stays_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let spill = Spill::to_dir(dir.path().join(INCOMING_DIR), 1000);
    let mut buffer = spill.buffer(&id("small"));
    let m = message(1000);
    for piece in m.chunks(7) {
        buffer.put(piece);
    }
    assert!(!buffer.is_spilled());
    let bytes = buffer.finish().unwrap();
    assert!(!bytes.is_mapped());
    assert_eq!(bytes, m);
    assert!(files(&dir.path().join(INCOMING_DIR)).is_empty());
}

#[test]
fn a_large_message_goes_to_a_private_file_and_comes_back_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let incoming = dir.path().join(INCOMING_DIR);
    let spill = Spill::to_dir(incoming.clone(), 1000);
    let mut buffer = spill.buffer(&id("large"));
    let m = message(300_000);
    for piece in m.chunks(999) {
        buffer.put(piece);
    }
    assert!(buffer.is_spilled());
    assert_eq!(files(&incoming), ["large.tmp"]);
    assert_eq!(mode(&incoming), 0o700);
    assert_eq!(mode(&incoming.join("large.tmp")), 0o600);
    let bytes = buffer.finish().unwrap();
    assert!(bytes.is_mapped());
    assert_eq!(bytes, m);
    assert!(files(&incoming).is_empty(), "unlinked once mapped");
}

#[test]
fn a_dropped_buffer_removes_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let incoming = dir.path().join(INCOMING_DIR);
    let mut buffer = Spill::to_dir(incoming.clone(), 10).buffer(&id("cut"));
    buffer.put(&message(100));
    assert_eq!(files(&incoming), ["cut.tmp"]);
    drop(buffer);
    assert!(files(&incoming).is_empty());
}

#[test]
fn the_header_section_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let spill = Spill::to_dir(dir.path().join(INCOMING_DIR), 1000);
    let field = b"X-Filler: 0123456789012345678901234567890123456789012345678901234567890\r\n";
    let mut buffer = spill.buffer(&id("headers"));
    let mut written = 0;
    while written <= MAX_HEADER {
        buffer.put(field);
        written += field.len();
    }
    buffer.put(b"\r\nbody\r\n");
    assert!(matches!(
        buffer.finish(),
        Err(IncomingError::HeaderTooLong(MAX_HEADER))
    ));
    assert!(files(&dir.path().join(INCOMING_DIR)).is_empty());

    // Just under the cap, split anywhere (CR LF CR LF across puts), it is fine.
    let mut buffer = spill.buffer(&id("fits"));
    let mut m = Vec::new();
    while m.len() + field.len() < MAX_HEADER - 2 {
        m.extend_from_slice(field);
    }
    m.extend_from_slice(b"\r\n");
    m.extend_from_slice(&message(MAX_HEADER * 2)[17..]);
    for piece in m.chunks(3) {
        buffer.put(piece);
    }
    assert_eq!(buffer.finish().unwrap(), m);
}

#[test]
fn a_message_without_a_body_is_all_header() {
    let spill = Spill::memory();
    let mut buffer = spill.buffer(&id("nobody"));
    buffer.put(b"Subject: x\r\n");
    assert_eq!(buffer.finish().unwrap(), b"Subject: x\r\n".to_vec());
}

#[test]
fn assemble_writes_large_messages_to_a_new_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let incoming = dir.path().join(INCOMING_DIR);
    let spill = Spill::to_dir(incoming.clone(), 1000);
    let body = message(5000);
    let small = spill
        .assemble(&id("a"), &[b"X: 1\r\n", b"\r\nhi\r\n"])
        .unwrap();
    assert!(!small.is_mapped());
    assert_eq!(small, b"X: 1\r\n\r\nhi\r\n".to_vec());
    let large = spill.assemble(&id("a"), &[b"X: 1\r\n", &body]).unwrap();
    assert!(large.is_mapped());
    assert_eq!(large, [&b"X: 1\r\n"[..], &body].concat());
    assert!(files(&incoming).is_empty());
}

#[test]
fn prepare_removes_leftovers_and_closes_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let incoming = dir.path().join(INCOMING_DIR);
    fs::create_dir(&incoming).unwrap();
    fs::set_permissions(&incoming, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(incoming.join("crashed.tmp"), b"half a message").unwrap();
    assert_eq!(prepare(dir.path()).unwrap(), incoming);
    assert!(files(&incoming).is_empty());
    assert_eq!(mode(&incoming), 0o700);
}

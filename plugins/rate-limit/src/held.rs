//! The concurrency counter keys a connection holds, as the session value the host keeps for
//! the plugin between `connect` and `closed`: each key as a 2-byte length and its bytes.
//! Keys hold user names and addresses, so no separator byte is safe.

pub fn encode(keys: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for key in keys {
        // Keys are capped far below 64 KiB by the host; a longer one could not have been
        // counted, so it is not kept.
        let Ok(len) = u16::try_from(key.len()) else {
            continue;
        };
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(key.as_bytes());
    }
    out
}

/// The keys of a value written by [`encode`]; what does not decode is skipped.
pub fn decode(mut value: &[u8]) -> Vec<String> {
    let mut keys = Vec::new();
    while let [a, b, rest @ ..] = value {
        let len = usize::from(u16::from_be_bytes([*a, *b]));
        let Some((key, tail)) = rest.split_at_checked(len) else {
            break;
        };
        if let Ok(key) = std::str::from_utf8(key) {
            keys.push(key.to_string());
        }
        value = tail;
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_whatever_bytes_they_hold() {
        let keys = vec![
            "c\u{0}1\n2".to_string(),
            String::new(),
            "user@example.com".to_string(),
        ];
        assert_eq!(decode(&encode(&keys)), keys);
        assert_eq!(decode(&[]), Vec::<String>::new());
        // A truncated value gives back what is whole.
        let mut cut = encode(&keys);
        cut.truncate(cut.len() - 1);
        assert_eq!(decode(&cut), keys[..2].to_vec());
    }
}

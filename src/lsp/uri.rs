//! `file:` URIs <-> paths. Editors send percent-encoded URIs; paths may hold
//! any bytes, so both directions encode and decode bytes, not characters.

use std::path::{Path, PathBuf};

/// Bytes that stand for themselves in a URI path; everything else is `%XX`.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/')
}

/// The `file://` URI of an absolute path (relative paths are made absolute
/// against the current folder first).
pub fn from_path(path: &Path) -> String {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let mut out = String::from("file://");
    for &b in path_bytes(&absolute).iter() {
        if unreserved(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The path of a `file:` URI; None for other schemes, hosts other than the
/// local one, or a malformed escape.
pub fn to_path(uri: &str) -> Option<PathBuf> {
    let rest = uri.strip_prefix("file://")?;
    // `file:///p` (empty host) or `file://localhost/p`.
    let path = if rest.starts_with('/') {
        rest
    } else {
        rest.strip_prefix("localhost")?
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    let mut bytes = Vec::with_capacity(path.len());
    let mut it = path.bytes();
    while let Some(b) = it.next() {
        if b == b'%' {
            let hi = (it.next()? as char).to_digit(16)?;
            let lo = (it.next()? as char).to_digit(16)?;
            bytes.push((hi * 16 + lo) as u8);
        } else {
            bytes.push(b);
        }
    }
    Some(path_from_bytes(bytes))
}

#[cfg(unix)]
fn path_bytes(path: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes().to_vec()
}

#[cfg(not(unix))]
fn path_bytes(path: &Path) -> Vec<u8> {
    path.to_string_lossy().replace('\\', "/").into_bytes()
}

#[cfg(unix)]
fn path_from_bytes(bytes: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

#[cfg(not(unix))]
fn path_from_bytes(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip_through_uris() {
        for p in ["/a/b.pnn", "/with space/ü 𝒙/m.pnn", "/per%cent#hash?.pnn"] {
            let uri = from_path(Path::new(p));
            assert!(uri.starts_with("file:///"), "{uri}");
            assert!(uri.is_ascii());
            assert_eq!(to_path(&uri).as_deref(), Some(Path::new(p)), "{uri}");
        }
        assert_eq!(
            from_path(Path::new("/a b/é.pnn")),
            "file:///a%20b/%C3%A9.pnn"
        );
    }

    #[test]
    fn editor_spellings_are_accepted_and_others_refused() {
        assert_eq!(
            to_path("file://localhost/x/y.pnn").as_deref(),
            Some(Path::new("/x/y.pnn"))
        );
        assert_eq!(
            to_path("file:///x/%c3%a9.pnn").as_deref(),
            Some(Path::new("/x/é.pnn"))
        );
        assert_eq!(to_path("untitled:Untitled-1"), None);
        assert_eq!(to_path("file://server/share/x.pnn"), None);
        assert_eq!(to_path("file:///bad%zz"), None);
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_paths_survive() {
        use std::os::unix::ffi::OsStrExt;
        let p = Path::new(std::ffi::OsStr::from_bytes(b"/tmp/\xff.pnn"));
        let uri = from_path(p);
        assert_eq!(uri, "file:///tmp/%FF.pnn");
        assert_eq!(to_path(&uri).as_deref(), Some(p));
    }
}

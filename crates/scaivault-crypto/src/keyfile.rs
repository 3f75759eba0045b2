use std::fs::OpenOptions;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SystemRandom;
use zeroize::Zeroizing;

use crate::envelope::random_key;
use crate::{CryptoError, RootKey};

/// Parses `SCAIVAULT_MASTER_KEY`: standard base64 of exactly 32 bytes.
pub fn root_key_from_base64(text: &str) -> Result<RootKey, CryptoError> {
    let bytes = Zeroizing::new(
        STANDARD.decode(text.trim()).map_err(|_| CryptoError::InvalidKey("not valid base64".into()))?,
    );
    RootKey::from_bytes(&bytes)
}

/// Reads the root key from `path`, or creates it (mode 0600, fsynced) when it does not exist.
/// Returns the key and whether it was created.
pub fn load_or_create_key_file(path: &Path) -> Result<(RootKey, bool), CryptoError> {
    let io_err = |source| CryptoError::KeyFile { path: path.display().to_string(), source };
    match std::fs::File::open(path) {
        Ok(mut file) => {
            let mut text = Zeroizing::new(String::new());
            file.read_to_string(&mut text).map_err(io_err)?;
            Ok((root_key_from_base64(&text)?, false))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let key = random_key(&SystemRandom::new())?;
            let mut text = Zeroizing::new(STANDARD.encode(key.as_ref()));
            text.push('\n');
            let mut file =
                OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io_err)?;
            file.write_all(text.as_bytes()).map_err(io_err)?;
            file.sync_all().map_err(io_err)?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err)?;
            }
            Ok((RootKey::from_bytes(key.as_ref())?, true))
        }
        Err(e) => Err(io_err(e)),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn creates_with_mode_0600_then_reads_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let (_, created) = load_or_create_key_file(&path).unwrap();
        assert!(created);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        let (_, created_again) = load_or_create_key_file(&path).unwrap();
        assert!(!created_again);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }

    #[test]
    fn rejects_bad_material() {
        assert!(root_key_from_base64("not base64!").is_err());
        assert!(root_key_from_base64(&STANDARD.encode([0u8; 16])).is_err());
        assert!(root_key_from_base64(&STANDARD.encode([0u8; 32])).is_ok());
    }
}

use std::fmt;

use zeroize::Zeroizing;

/// Plaintext or key bytes. Zeroized on drop; `Debug` never shows the content.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(Zeroizing::new(bytes))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub(crate) fn expose_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }

    pub(crate) fn truncate(&mut self, len: usize) {
        // Zeroizing<Vec> zeroes what it holds on drop; bytes cut off here are zeroed first.
        let tail = &mut self.0[len..];
        zeroize::Zeroize::zeroize(tail);
        self.0.truncate(len);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(bytes: Vec<u8>) -> Self {
        SecretBytes::new(bytes)
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

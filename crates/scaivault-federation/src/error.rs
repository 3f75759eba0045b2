use thiserror::Error;

/// What went wrong talking to an external store. No message carries a secret value or a
/// credential: a store's error text is cut to its first line and to 200 characters, and bodies of
/// successful answers are never quoted.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FederationError {
    /// The backend's configuration cannot work (a bad address, a credential of the wrong shape).
    #[error("federation backend configuration: {0}")]
    Config(String),
    /// The store has no such secret, or no such version of it.
    #[error("the federation backend has no secret '{0}'")]
    NotFound(String),
    /// The store refused ScaiVault's own credential.
    #[error("the federation backend refused ScaiVault's credential ({status})")]
    Denied { status: u16 },
    /// The store answered with an error.
    #[error("the federation backend answered {status}: {message}")]
    Backend { status: u16, message: String },
    /// The request asks for something this store does not offer (a numbered AWS version).
    #[error("{0}")]
    Unsupported(String),
    /// The store could not be reached, or did not answer in time.
    #[error("the federation backend is unreachable: {0}")]
    Unreachable(String),
}

/// A store's error text, cut to something safe to put in an answer and a log line.
pub(crate) fn short(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default().trim();
    let mut out: String = line.chars().take(200).collect();
    if out.len() < line.len() {
        out.push('…');
    }
    out
}

/// How long a refused credential is not presented again. A new version of the credential secret
/// builds a new client, and with it a clean slate.
const REFUSAL_HOLD: std::time::Duration = std::time::Duration::from_secs(30);

/// A credential refusal (a token endpoint, login or STS saying no), remembered for
/// [`REFUSAL_HOLD`] so that a refused credential is not presented again on every read: a store may
/// throttle or alert on repeated failed sign-ins.
#[derive(Debug, Default)]
pub(crate) struct RefusalHold(std::sync::Mutex<Option<(std::time::Instant, FederationError)>>);

impl RefusalHold {
    /// The refusal still held, if any.
    pub(crate) fn held(&self) -> Result<(), FederationError> {
        let slot = self.0.lock().expect("refusal hold lock");
        match slot.as_ref() {
            Some((at, refusal)) if at.elapsed() < REFUSAL_HOLD => Err(refusal.clone()),
            _ => Ok(()),
        }
    }

    /// Ends the hold now, as if its time had passed.
    #[cfg(test)]
    pub(crate) fn lapse(&self) {
        *self.0.lock().expect("refusal hold lock") = None;
    }

    /// Passes `result` on, holding it if it refuses the credential.
    pub(crate) fn note<T>(&self, result: Result<T, FederationError>) -> Result<T, FederationError> {
        if let Err(refusal @ FederationError::Denied { .. }) = &result {
            *self.0.lock().expect("refusal hold lock") = Some((std::time::Instant::now(), refusal.clone()));
        }
        result
    }
}

/// A request that got no answer, without its URL (which may carry a secret's name).
pub(crate) fn unreachable(e: reqwest::Error) -> FederationError {
    FederationError::Unreachable(short(&e.without_url().to_string()))
}

/// The HTTP client every adapter uses: no proxies from the environment, no redirects, and a call
/// gives up after 10 s (5 s to connect).
pub(crate) fn http_client() -> Result<reqwest::Client, FederationError> {
    http_client_trusting(None)
}

/// [`http_client`], trusting the certificate authorities of a PEM bundle besides the bundled
/// public roots (a store behind a private CA).
pub(crate) fn http_client_trusting(ca_pem: Option<&[u8]>) -> Result<reqwest::Client, FederationError> {
    let mut builder = reqwest::Client::builder();
    if let Some(pem) = ca_pem {
        let certs =
            reqwest::Certificate::from_pem_bundle(pem).ok().filter(|c| !c.is_empty()).ok_or_else(|| {
                FederationError::Config("the CA certificate is not a PEM certificate bundle".into())
            })?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .connect_timeout(std::time::Duration::from_secs(5))
        .build()
        .map_err(|e| FederationError::Config(short(&e.to_string())))
}

/// A non-empty string field of a credential secret; the message names the field, never a value.
pub(crate) fn credential_field<'a>(
    data: &'a serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<&'a str, FederationError> {
    data.get(name)
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| FederationError::Config(format!("the credential secret has no string field '{name}'")))
}

//! AWS Signature Version 4 for one `POST /` request (Secrets Manager's JSON protocol, STS's query
//! protocol), with the digests and MACs of the crypto crate. Only what the AWS adapter sends is covered: a path, an already-encoded query,
//! lower-case header names with trimmed values, and the whole body hashed.

use chrono::{DateTime, Utc};
use scaivault_crypto::{hmac_sha256, sha256};

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What is signed. (No `Debug`: its headers may hold a session token.)
pub(crate) struct Request<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    /// `name=value` pairs, each already URI-encoded; sorted here.
    pub(crate) query: &'a [(&'a str, &'a str)],
    /// Lower-case names; every one is signed. Must include `host`.
    pub(crate) headers: &'a [(&'a str, &'a str)],
    pub(crate) body: &'a [u8],
}

/// Who signs, where. (No `Debug`: it holds the secret key.)
pub(crate) struct Signer<'a> {
    pub(crate) access_key_id: &'a str,
    pub(crate) secret_access_key: &'a [u8],
    pub(crate) region: &'a str,
    pub(crate) service: &'a str,
}

/// Signs a `POST /` of `body` to `host` with `headers` (lower-case names) besides `host`,
/// `x-amz-date` and the session token: answers every header the request must carry, `host` and
/// `authorization` among them.
pub(crate) fn signed_post_headers(
    keys: &crate::AwsCredentials,
    (region, service, host): (&str, &str, &str),
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<(String, String)> {
    let now = amz_date(Utc::now());
    let token = keys.session_token.as_ref().map(|t| String::from_utf8_lossy(t.expose()).into_owned());
    let mut signed = vec![("host", host), ("x-amz-date", now.as_str())];
    signed.extend_from_slice(headers);
    if let Some(t) = &token {
        signed.push(("x-amz-security-token", t.as_str()));
    }
    let signer = Signer {
        access_key_id: &keys.access_key_id,
        secret_access_key: keys.secret_access_key.expose(),
        region,
        service,
    };
    let authorization = signer
        .authorization(&Request { method: "POST", path: "/", query: &[], headers: &signed, body }, &now);
    let mut out: Vec<(String, String)> =
        signed.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    out.push(("authorization".to_owned(), authorization));
    out
}

/// Signs `request` (a `POST /` of `body`, see [`signed_post_headers`]): adds the headers and the
/// body.
pub(crate) fn sign_post(
    request: reqwest::RequestBuilder,
    keys: &crate::AwsCredentials,
    scope: (&str, &str, &str),
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> reqwest::RequestBuilder {
    let mut request = request;
    // reqwest sets `host` from the URL itself.
    for (name, value) in
        signed_post_headers(keys, scope, headers, &body).into_iter().filter(|(n, _)| n != "host")
    {
        request = request.header(name, value);
    }
    request.body(body)
}

/// The `host` header a request to `url` carries (with its port, if the URL names one).
pub(crate) fn host_of(url: &reqwest::Url) -> String {
    match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_owned(),
    }
}

/// `20150830T123600Z`, the `x-amz-date` of `at`.
pub(crate) fn amz_date(at: DateTime<Utc>) -> String {
    at.format("%Y%m%dT%H%M%SZ").to_string()
}

impl Signer<'_> {
    /// The `Authorization` header for `request` at `amz_date` (which `request` must also carry as
    /// its `x-amz-date` header).
    pub(crate) fn authorization(&self, request: &Request<'_>, amz_date: &str) -> String {
        let date = &amz_date[..8.min(amz_date.len())];
        let mut headers: Vec<(&str, &str)> = request.headers.to_vec();
        headers.sort_unstable();
        let signed: Vec<&str> = headers.iter().map(|(name, _)| *name).collect();
        let signed = signed.join(";");
        let mut query: Vec<(&str, &str)> = request.query.to_vec();
        query.sort_unstable();
        let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{}\n", v.trim())).collect();
        let canonical = format!(
            "{}\n{}\n{}\n{canonical_headers}\n{signed}\n{}",
            request.method,
            request.path,
            query.join("&"),
            hex(&sha256(&[request.body]))
        );
        let scope = format!("{date}/{}/{}/aws4_request", self.region, self.service);
        let to_sign =
            format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex(&sha256(&[canonical.as_bytes()])));
        let key = [b"AWS4".as_slice(), self.secret_access_key].concat();
        let k_date = hmac_sha256(&key, &[date.as_bytes()]);
        let k_region = hmac_sha256(&k_date, &[self.region.as_bytes()]);
        let k_service = hmac_sha256(&k_region, &[self.service.as_bytes()]);
        let k_signing = hmac_sha256(&k_service, &[b"aws4_request"]);
        let signature = hex(&hmac_sha256(&k_signing, &[to_sign.as_bytes()]));
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
            self.access_key_id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example credentials and time of AWS's SigV4 test suite.
    fn example() -> Signer<'static> {
        Signer {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            region: "us-east-1",
            service: "service",
        }
    }

    const HEADERS: &[(&str, &str)] = &[("host", "example.amazonaws.com"), ("x-amz-date", "20150830T123600Z")];

    #[test]
    fn the_aws_test_suites_get_vanilla() {
        let r = Request { method: "GET", path: "/", query: &[], headers: HEADERS, body: b"" };
        assert_eq!(
            example().authorization(&r, "20150830T123600Z"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn the_aws_test_suites_query_order_case_sorts_the_query() {
        let r = Request {
            method: "GET",
            path: "/",
            query: &[("Param2", "value2"), ("Param1", "value1")],
            headers: HEADERS,
            body: b"",
        };
        assert!(
            example()
                .authorization(&r, "20150830T123600Z")
                .ends_with("Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500")
        );
    }

    #[test]
    fn the_aws_test_suites_post_x_www_form_urlencoded_signs_the_body_and_content_type() {
        let headers = [
            ("content-type", "application/x-www-form-urlencoded"),
            ("host", "example.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
        ];
        let r = Request { method: "POST", path: "/", query: &[], headers: &headers, body: b"Param1=value1" };
        assert_eq!(
            example().authorization(&r, "20150830T123600Z"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
        );
    }

    #[test]
    fn header_order_does_not_matter_and_the_body_is_signed() {
        let sign = |headers: &[(&str, &str)], body: &[u8]| {
            example().authorization(
                &Request { method: "POST", path: "/", query: &[], headers, body },
                "20150830T123600Z",
            )
        };
        let reversed = [HEADERS[1], HEADERS[0]];
        assert_eq!(sign(HEADERS, b"{}"), sign(&reversed, b"{}"));
        assert_ne!(sign(HEADERS, b"{}"), sign(HEADERS, b"{ }"));
    }

    #[test]
    fn dates_are_formatted_as_aws_wants() {
        let at = DateTime::parse_from_rfc3339("2015-08-30T12:36:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(amz_date(at), "20150830T123600Z");
    }
}

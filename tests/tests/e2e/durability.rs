//! What survives a stop: a clean restart, a SIGKILL in the middle of writes, and a SIGTERM in the
//! middle of requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use scaivault_e2e::{
    Api, Backend, Scratch, ServerCommand, assert_clean_exit, http_client, random_alnum, start_with_root,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------------------------
// 1. restart_keeps_data_and_root_token

#[tokio::test]
async fn restart_keeps_data_and_root_token_sqlite() {
    restart_keeps_data_and_root_token(Backend::Sqlite).await;
}

#[tokio::test]
async fn restart_keeps_data_and_root_token_postgres() {
    restart_keeps_data_and_root_token(Backend::Postgres).await;
}

async fn restart_keeps_data_and_root_token(backend: Backend) {
    let scratch = Scratch::new();
    let Some(storage) = backend.fresh(scratch.path()) else { return };
    let client = http_client();
    let token_file = scratch.path().join("root-token");

    let mut first =
        ServerCommand::new(scratch.path()).storage(&storage).root_token_file(&token_file).start().await;
    let root =
        first.root_token().expect("the first start on empty storage writes --root-token-file").to_owned();
    assert!(root.starts_with("skt_") && root.len() > 20, "unexpected root token shape");
    let stdout = first.stdout();
    assert!(
        stdout.lines().any(|l| l == format!("root token written to {}", token_file.display())),
        "stdout of the first start:\n{stdout}"
    );
    assert!(!stdout.contains(&root), "the root token was printed although --root-token-file was given");

    let writes: Vec<(&str, Vec<Value>)> = vec![
        ("app/db/password", vec![json!({"password": random_alnum(24)})]),
        ("app/payments/api-key", vec![json!({"key": random_alnum(32), "region": "eu-west-1"})]),
        (
            "app/oauth/client",
            vec![
                json!({"client_secret": random_alnum(32), "rev": 1}),
                json!({"client_secret": random_alnum(32), "rev": 2}),
                json!({"client_secret": random_alnum(32), "rev": 3, "nested": {"a": [1, 2, 3]}}),
            ],
        ),
    ];
    let api = Api::new(&client, &first, &root);
    for (path, versions) in &writes {
        for (i, data) in versions.iter().enumerate() {
            let reply = api.put_secret(path, &json!({ "data": data })).await;
            assert_eq!(reply.status, if i == 0 { 201 } else { 200 }, "PUT {path} #{}: {}", i + 1, reply.text);
            assert_eq!(reply.body["path"], json!(path), "{}", reply.text);
            assert_eq!(reply.body["version"], json!(i + 1), "{}", reply.text);
        }
    }

    let status = first.sigterm_and_wait().await;
    assert_clean_exit(status, &first);

    let second_token_file = scratch.path().join("root-token-second");
    let second = ServerCommand::new(scratch.path())
        .storage(&storage)
        .root_token_file(&second_token_file)
        .start()
        .await;
    assert!(
        !second_token_file.exists(),
        "a restart on existing storage created a new root token file {}",
        second_token_file.display()
    );
    let stdout = second.stdout();
    assert!(!stdout.to_lowercase().contains("root token"), "stdout of the restart:\n{stdout}");
    assert!(!stdout.contains("skt_"), "stdout of the restart shows a token:\n{stdout}");

    let api = Api::new(&client, &second, &root);
    let whoami = api.get("/v1/auth/whoami").await;
    assert_eq!(whoami.status, 200, "the old root token after a restart: {}", whoami.text);
    for (path, versions) in &writes {
        for (i, data) in versions.iter().enumerate() {
            let version = i as u64 + 1;
            let reply = api.get_secret(path, Some(version)).await;
            assert_eq!(reply.status, 200, "GET {path}?version={version}: {}", reply.text);
            assert_eq!(reply.body["data"], *data, "GET {path}?version={version}");
            assert_eq!(reply.body["version"], json!(version), "GET {path}?version={version}");
            assert_eq!(reply.body["path"], json!(path));
        }
        let current = api.get_secret(path, None).await;
        assert_eq!(current.status, 200, "GET {path}: {}", current.text);
        assert_eq!(current.body["version"], json!(versions.len()), "current version of {path}");
        assert_eq!(current.body["data"], *versions.last().expect("a version"), "current data of {path}");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. sigkill_keeps_every_acknowledged_write

const WRITERS: usize = 4;
const WRITES_PER_WRITER: usize = 200;
/// The kill comes after this many acknowledged writes in total, or after `KILL_AFTER`, whichever is
/// first: either way well before the writers run out, so writes are in flight.
const KILL_AFTER_ACKS: usize = 400;
const KILL_AFTER: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_keeps_every_acknowledged_write_sqlite() {
    sigkill_keeps_every_acknowledged_write(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_keeps_every_acknowledged_write_postgres() {
    sigkill_keeps_every_acknowledged_write(Backend::Postgres).await;
}

#[derive(Debug, Default)]
struct WriterLog {
    path: String,
    /// Every write that got a 2xx, in order: (version, value).
    acked: Vec<(u64, String)>,
    /// The value being written when the transport failed (it may or may not have been committed).
    in_flight: Option<String>,
    /// The transport error that ended the writer (expected only after the kill).
    ended_by: Option<String>,
    /// Anything that must fail the test.
    problems: Vec<String>,
}

async fn writer(api: Api, path: String, acks: Arc<AtomicUsize>, killed: Arc<AtomicBool>) -> WriterLog {
    let mut log = WriterLog { path: path.clone(), ..WriterLog::default() };
    for i in 0..WRITES_PER_WRITER {
        let value = format!("{path}#{i}:{}", random_alnum(24));
        let body = json!({"data": {"v": value}, "options": {"max_versions": 1000}});
        let sent = api
            .try_send(Method::PUT, &format!("/v1/secrets/{path}"), Some(body.to_string().into_bytes()))
            .await;
        match sent {
            Ok(reply) if reply.status == 200 || reply.status == 201 => {
                let Some(version) = reply.body["version"].as_u64() else {
                    log.problems.push(format!("2xx without a version: {}", reply.text));
                    break;
                };
                log.acked.push((version, value));
                acks.fetch_add(1, Ordering::SeqCst);
            }
            Ok(reply) => {
                log.problems.push(format!("PUT #{i} answered {}: {}", reply.status, reply.text));
                break;
            }
            Err(e) => {
                if !killed.load(Ordering::SeqCst) {
                    log.problems.push(format!("PUT #{i} failed before the kill: {e:#}"));
                }
                log.in_flight = Some(value);
                log.ended_by = Some(format!("{e:#}"));
                break;
            }
        }
    }
    log
}

async fn sigkill_keeps_every_acknowledged_write(backend: Backend) {
    let scratch = Scratch::new();
    let Some(storage) = backend.fresh(scratch.path()) else { return };
    let client = http_client();
    let (mut server, root) = start_with_root(scratch.path(), &storage).await;
    let api = Api::new(&client, &server, &root);

    let acks = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(api.clone(), format!("e2e/kill/w{w}"), acks.clone(), killed.clone())))
        .collect();
    let started = Instant::now();
    while acks.load(Ordering::SeqCst) < KILL_AFTER_ACKS
        && started.elapsed() < KILL_AFTER
        && !handles.iter().all(|h| h.is_finished())
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    killed.store(true, Ordering::SeqCst);
    server.sigkill();
    let acked_at_kill = acks.load(Ordering::SeqCst);

    let mut logs = Vec::new();
    for handle in handles {
        logs.push(
            tokio::time::timeout(Duration::from_secs(60), handle).await.expect("writer ends").expect("join"),
        );
    }
    let problems: Vec<String> =
        logs.iter().flat_map(|l| l.problems.iter().map(|p| format!("{}: {p}", l.path))).collect();
    assert!(problems.is_empty(), "writers saw failures before the kill:\n{}", problems.join("\n"));
    assert!(acked_at_kill > 0, "no write was acknowledged before the kill");
    assert!(
        logs.iter().any(|l| l.ended_by.is_some()),
        "every writer finished all its writes before the kill, so the kill hit no write in flight"
    );
    for log in &logs {
        for (i, (version, _)) in log.acked.iter().enumerate() {
            assert_eq!(*version, i as u64 + 1, "{}: versions of sequential writes", log.path);
        }
    }
    eprintln!(
        "{backend:?}: {} writes acknowledged before SIGKILL after {:?}",
        logs.iter().map(|l| l.acked.len()).sum::<usize>(),
        started.elapsed()
    );

    let restarted = ServerCommand::new(scratch.path()).storage(&storage).start().await;
    let api = Api::new(&client, &restarted, &root);
    let checks: Vec<_> = logs
        .into_iter()
        .map(|log| {
            let api = api.clone();
            tokio::spawn(async move {
                let mut wrong = Vec::new();
                for (version, value) in &log.acked {
                    let reply = api.get_secret(&log.path, Some(*version)).await;
                    if reply.status != 200
                        || reply.body["data"] != json!({ "v": value })
                        || reply.body["version"] != json!(version)
                    {
                        wrong
                            .push(format!("{}?version={version}: {} {}", log.path, reply.status, reply.text));
                    }
                }
                let last = log.acked.last().map_or(0, |(v, _)| *v);
                let current = api.get_secret(&log.path, None).await;
                if last == 0 && current.status == 404 {
                    return wrong;
                }
                let current_version = current.body["version"].as_u64().unwrap_or(0);
                if current.status != 200 || !(last..=last + 1).contains(&current_version) {
                    wrong.push(format!(
                        "{}: current version after restart is {} {} (last acknowledged {last})",
                        log.path, current.status, current.text
                    ));
                } else if current_version == last + 1 {
                    // The write in flight at the kill was committed without its answer: it must be
                    // exactly that write.
                    let expected = json!({ "v": log.in_flight.clone().unwrap_or_default() });
                    if current.body["data"] != expected {
                        wrong.push(format!(
                            "{}: unacknowledged version {current_version} has foreign data",
                            log.path
                        ));
                    }
                }
                wrong
            })
        })
        .collect();
    let mut wrong = Vec::new();
    for check in checks {
        wrong.extend(check.await.expect("join"));
    }
    assert!(wrong.is_empty(), "acknowledged writes lost or changed by SIGKILL:\n{}", wrong.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// 7. graceful_shutdown_finishes_in_flight

/// Requests held open mid-body (after the server's `100 Continue`) across the SIGTERM.
const HELD: usize = 10;
/// Requests fired through `reqwest` just before the SIGTERM.
const FIRED: usize = 20;
const IO_DEADLINE: Duration = Duration::from_secs(15);

/// A raw HTTP/1.1 PUT whose headers the server has read (it answered `100 Continue`) and whose body
/// is only half sent.
struct HeldPut {
    path: String,
    stream: TcpStream,
    rest: Vec<u8>,
}

async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> String {
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = buf.drain(..end + 4).collect();
                return String::from_utf8_lossy(&head).into_owned();
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(
                n > 0,
                "connection closed before a response head; got {:?}",
                String::from_utf8_lossy(buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(IO_DEADLINE, read).await.expect("response head in time")
}

async fn hold_put(addr: SocketAddr, token: &str, path: &str, data: &Value) -> HeldPut {
    let body = json!({ "data": data }).to_string().into_bytes();
    let mut stream = tokio::time::timeout(IO_DEADLINE, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let head = format!(
        "PUT /v1/secrets/{path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    let mut buf = Vec::new();
    let interim = read_head(&mut stream, &mut buf).await;
    assert!(interim.starts_with("HTTP/1.1 100"), "expected 100 Continue, got {interim:?}");
    assert!(buf.is_empty(), "unexpected bytes after 100 Continue");
    let half = body.len() / 2;
    stream.write_all(&body[..half]).await.expect("write half the body");
    HeldPut { path: path.to_owned(), stream, rest: body[half..].to_vec() }
}

/// Sends the rest of the body and reads the whole response (the server closes the connection after
/// it, since it is shutting down): `(status, body)`, checking the body is as long as announced.
async fn finish_put(mut held: HeldPut) -> (String, u16, Value) {
    held.stream.write_all(&held.rest).await.expect("write the rest of the body");
    let mut buf = Vec::new();
    let head = read_head(&mut held.stream, &mut buf).await;
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("{}: response without Content-Length: {head:?}", held.path));
    let read_body = async {
        while buf.len() < length {
            let mut chunk = [0u8; 4096];
            let n = held.stream.read(&mut chunk).await.expect("read body");
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(IO_DEADLINE, read_body).await.expect("response body in time");
    assert_eq!(buf.len(), length, "{}: truncated response body after {head:?}", held.path);
    (held.path, status, serde_json::from_slice(&buf).unwrap_or(Value::Null))
}

enum Fired {
    /// A complete answer.
    Answered(u16, Value),
    /// No answer at all: refused, or closed before any response byte (never served).
    NotServed(String),
    /// An answer whose body broke off.
    Truncated(u16, String),
}

async fn fire_put(client: reqwest::Client, url: String, token: String, data: Value) -> Fired {
    let sent = client.put(url).bearer_auth(token).json(&json!({ "data": data })).send().await;
    match sent {
        Err(e) => Fired::NotServed(format!("{e} (connect error: {})", e.is_connect())),
        Ok(response) => {
            let status = response.status().as_u16();
            match response.bytes().await {
                Ok(bytes) => Fired::Answered(status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)),
                Err(e) => Fired::Truncated(status, e.to_string()),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight() {
    let scratch = Scratch::new();
    let storage = Backend::Sqlite.fresh(scratch.path()).expect("sqlite");
    let client = http_client();
    let (mut server, root) = start_with_root(scratch.path(), &storage).await;
    let addr = server.addr();

    let mut held = Vec::new();
    let mut held_data = Vec::new();
    for i in 0..HELD {
        let data = json!({"value": random_alnum(40), "i": i});
        held.push(hold_put(addr, &root, &format!("e2e/held/{i}"), &data).await);
        held_data.push(data);
    }
    let fired: Vec<_> = (0..FIRED)
        .map(|i| {
            let data = json!({"value": random_alnum(40), "i": i});
            let url = format!("{}/v1/secrets/e2e/fired/{i}", server.base_url());
            (data.clone(), tokio::spawn(fire_put(client.clone(), url, root.clone(), data)))
        })
        .collect();
    // SIGTERM as soon as the first fired request is answered, when the others are under way.
    let deadline = Instant::now() + IO_DEADLINE;
    while !fired.iter().any(|(_, task)| task.is_finished()) {
        assert!(Instant::now() < deadline, "no fired PUT finished within {IO_DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.sigterm();

    // The listener closes as soon as the signal is handled: from then on connections are refused.
    let deadline = Instant::now() + IO_DEADLINE;
    loop {
        match TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            _ => {}
        }
        assert!(Instant::now() < deadline, "the listener was still open {IO_DEADLINE:?} after SIGTERM");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!server.stderr().contains("panicked"), "the server panicked on SIGTERM:\n{}", server.stderr());

    // The shutdown is under way; the held requests must still be served in full.
    let finishing: Vec<_> = held.into_iter().map(|h| tokio::spawn(finish_put(h))).collect();
    let mut problems = Vec::new();
    for (i, task) in finishing.into_iter().enumerate() {
        let (path, status, body) = task.await.expect("join");
        if status != 201 || body["version"] != json!(1) || body["path"] != json!(path) {
            problems.push(format!("held PUT {path}: {status} {body}"));
        }
        assert_eq!(path, format!("e2e/held/{i}"));
    }
    let mut fired_outcomes = Vec::new();
    for (i, (data, task)) in fired.into_iter().enumerate() {
        let outcome =
            tokio::time::timeout(Duration::from_secs(60), task).await.expect("fired PUT ends").expect("join");
        match &outcome {
            Fired::Answered(201, body) if body["version"] == json!(1) => {}
            Fired::NotServed(_) => {}
            Fired::Answered(status, body) => {
                problems.push(format!("fired PUT e2e/fired/{i}: answered {status} {body}"));
            }
            Fired::Truncated(status, error) => {
                problems.push(format!("fired PUT e2e/fired/{i}: a {status} whose body broke off: {error}"));
            }
        }
        fired_outcomes.push((data, outcome));
    }
    let status = server.wait().await;
    assert_clean_exit(status, &server);
    assert!(problems.is_empty(), "requests in flight at SIGTERM were not finished:\n{}", problems.join("\n"));
    let answered = fired_outcomes.iter().filter(|(_, o)| matches!(o, Fired::Answered(..))).count();
    let refused = fired_outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Fired::NotServed(e) if e.ends_with("(connect error: true)")))
        .count();
    eprintln!(
        "of {FIRED} fired PUTs, {answered} were answered, {refused} refused, {} closed unserved",
        FIRED - answered - refused
    );

    // Everything answered is stored; nothing that got no answer is.
    let restarted = ServerCommand::new(scratch.path()).storage(&storage).start().await;
    let api = Api::new(&client, &restarted, &root);
    for (i, data) in held_data.iter().enumerate() {
        let reply = api.get_secret(&format!("e2e/held/{i}"), None).await;
        assert_eq!((reply.status, &reply.body["data"]), (200, data), "held PUT e2e/held/{i}: {}", reply.text);
    }
    for (i, (data, outcome)) in fired_outcomes.iter().enumerate() {
        let reply = api.get_secret(&format!("e2e/fired/{i}"), None).await;
        match outcome {
            Fired::Answered(..) => {
                assert_eq!(
                    (reply.status, &reply.body["data"]),
                    (200, data),
                    "fired PUT e2e/fired/{i}: {}",
                    reply.text
                );
            }
            Fired::NotServed(error) | Fired::Truncated(_, error) => assert_eq!(
                (reply.status, reply.code()),
                (404, "secret_not_found"),
                "fired PUT e2e/fired/{i} got no answer ({error}) but was stored"
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 4. a stop ends what would never end by itself

/// A client holding `/v1/events/stream` does not keep a SIGTERM from completing: the stream ends
/// cleanly (the chunked body is terminated, not cut off) and the server exits 0 without reaching
/// its shutdown timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_event_streams() {
    let scratch = Scratch::new();
    let storage = Backend::Sqlite.fresh(scratch.path()).expect("sqlite");
    let (mut server, root) = start_with_root(scratch.path(), &storage).await;
    let client = http_client();
    let mut streams = Vec::new();
    for _ in 0..2 {
        let response = client
            .get(format!("{}/v1/events/stream", server.base_url()))
            .bearer_auth(&root)
            .send()
            .await
            .expect("open the stream");
        assert_eq!(response.status(), 200);
        streams.push(response);
    }
    server.sigterm();
    for mut stream in streams {
        let ended = tokio::time::timeout(IO_DEADLINE, async {
            loop {
                match stream.chunk().await {
                    Ok(Some(_)) => {} // a keep-alive comment
                    other => return other.map(|_| ()),
                }
            }
        })
        .await
        .expect("the stream ends after SIGTERM");
        ended.expect("the stream ends cleanly, not cut off");
    }
    let status = server.wait().await;
    assert_clean_exit(status, &server);
    assert!(!server.stderr().contains("shutdown timeout"), "the drain timed out:\n{}", server.stderr());
}

/// A request that never completes (a body half sent) holds a stop only until `--shutdown-timeout`:
/// then its connection is closed and the server exits 0, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_request_holds_a_stop_only_until_the_shutdown_timeout() {
    let scratch = Scratch::new();
    let storage = Backend::Sqlite.fresh(scratch.path()).expect("sqlite");
    let mut server = ServerCommand::new(scratch.path())
        .storage(&storage)
        .root_token_file(&scratch.path().join("root-token"))
        .arg("--shutdown-timeout")
        .arg("1s")
        .start()
        .await;
    let root = server.root_token().expect("root token").to_owned();
    let mut held = hold_put(server.addr(), &root, "e2e/stuck", &json!({"v": 1})).await;
    server.sigterm();
    let status = server.wait().await;
    assert_clean_exit(status, &server);
    assert!(
        server.stderr().contains("requests still in flight at the shutdown timeout"),
        "the stop does not say why it closed a connection:\n{}",
        server.stderr()
    );
    let mut rest = Vec::new();
    let read = tokio::time::timeout(IO_DEADLINE, held.stream.read_to_end(&mut rest)).await.expect("closed");
    assert!(
        read.is_err() || rest.is_empty(),
        "the stuck request was answered: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

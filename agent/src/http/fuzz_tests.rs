//! Fuzzing the request head for a bounded time (issue 23 item 10): any
//! bytes, and heads built from the grammar's own pieces so the parser's
//! deeper branches are reached, never make it panic or hang; what it
//! accepts is well formed, and what it refuses it answers with 400, 431 or
//! 505. Each case has a deadline (proptest's `timeout`): a hang fails.
//! `read_head` is fuzzed too, over a real loopback socket with the bytes
//! sent in random pieces and the peer hanging up.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::head::{self, HeadError, MAX_HEAD_BYTES};
use super::host::{self, Ends};

/// What a parsed request must hold, or the status a refusal must carry.
fn parse_and_judge(bytes: &[u8]) -> Result<(), TestCaseError> {
    let Some(end) = head::find_head_end(bytes) else {
        return Ok(());
    };
    prop_assert!(end <= MAX_HEAD_BYTES);
    match head::parse_head(&bytes[..end]) {
        Ok(req) => {
            prop_assert!(req.target.starts_with('/'));
            prop_assert!(!req.method.is_empty());
            let here = IpAddr::V4(Ipv4Addr::LOCALHOST);
            let ends = Ends {
                peer: here,
                local: here,
                listen: here,
            };
            let _ = host::check(req.host, req.http10, &ends);
        }
        Err(resp) => {
            let status = String::from_utf8_lossy(&resp.to_bytes()).into_owned();
            let known = ["400", "431", "505"]
                .iter()
                .any(|c| status.contains(&format!(" {c} ")));
            prop_assert!(known, "unexpected refusal: {status}");
        }
    }
    Ok(())
}

/// A head from the grammar's pieces: methods, targets, versions, headers
/// (some malformed), line ends of both kinds.
fn grammar_head() -> impl Strategy<Value = Vec<u8>> {
    let s = |v: &'static str| Just(v.to_string());
    let method = prop_oneof![s("GET"), s("POST"), s("G(T"), s(""), "[A-Z]{1,8}"];
    let target = prop_oneof![s("/"), s("/metrics"), s("x"), "/[ -~]{0,40}"];
    let version = prop_oneof![s("HTTP/1.1"), s("HTTP/1.0"), s("HTTP/2"), "[ -~]{0,10}"];
    let header = prop_oneof![
        "Host: [a-z0-9.:\\[\\]]{0,30}",
        "[A-Za-z-]{1,12}: [ -~]{0,40}",
        "[ -~]{0,30}",
        s("host:127.0.0.1"),
    ];
    let eol = prop_oneof![s("\r\n"), s("\n")];
    (
        method,
        target,
        version,
        proptest::collection::vec((header, eol.clone()), 0..80),
        eol,
    )
        .prop_map(|(m, t, v, headers, end)| {
            let mut s = format!("{m} {t} {v}{end}");
            for (h, e) in headers {
                s.push_str(&h);
                s.push_str(&e);
            }
            s.push_str(&end);
            s.into_bytes()
        })
}

/// `bytes` sent to `read_head` in pieces of `sizes`, then the peer hangs up.
fn read_over_socket(bytes: &[u8], sizes: &[usize]) -> Result<Vec<u8>, HeadError> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (mut server, _) = listener.accept().expect("accept");
    let (data, sizes) = (bytes.to_vec(), sizes.to_vec());
    let writer = std::thread::spawn(move || {
        let mut at = 0;
        for size in sizes.iter().cycle().take(data.len() + 1) {
            let next = (at + size.max(&1)).min(data.len());
            if client.write_all(&data[at..next]).is_err() {
                return;
            }
            at = next;
            if at == data.len() {
                break;
            }
        }
    });
    let got = head::read_head(&mut server, Instant::now() + Duration::from_secs(2));
    let _ = writer.join();
    got
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, timeout: 3_000, .. ProptestConfig::default() })]

    #[test]
    fn any_bytes_are_parsed_or_refused_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..10_000)) {
        parse_and_judge(&bytes)?;
    }

    #[test]
    fn heads_from_the_grammar_are_parsed_or_refused_by_status(bytes in grammar_head()) {
        parse_and_judge(&bytes)?;
    }

    #[test]
    fn read_head_ends_on_any_input_in_any_pieces(
        bytes in prop_oneof![grammar_head(), proptest::collection::vec(any::<u8>(), 0..9_000)],
        sizes in proptest::collection::vec(1usize..700, 1..8),
    ) {
        match read_over_socket(&bytes, &sizes) {
            Ok(head) => prop_assert!(head.len() <= MAX_HEAD_BYTES),
            Err(HeadError::TooLarge) => prop_assert!(bytes.len() >= MAX_HEAD_BYTES),
            Err(HeadError::Incomplete) => prop_assert!(head::find_head_end(&bytes).is_none()),
        }
    }
}

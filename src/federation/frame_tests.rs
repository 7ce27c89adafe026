use super::*;

fn scan(text: &str) -> Scan {
    let mut s = Scanner::default();
    // In pieces, as a pipe delivers it.
    for piece in text.as_bytes().chunks(3) {
        s.feed(piece);
    }
    s.finish()
}

fn id(text: &str) -> Option<String> {
    scan(text).id.map(|b| String::from_utf8(b).unwrap())
}

#[test]
fn the_top_level_id_is_found_wherever_it_stands() {
    assert_eq!(id(r#"{"jsonrpc":"2.0","id":7,"result":{}}"#).as_deref(), Some("7"));
    assert_eq!(id(r#"{"result":{"id":99,"content":[{"id":"x"}]},"jsonrpc":"2.0","id":"a\"b"}"#).as_deref(), Some(r#""a\"b""#));
    assert_eq!(id(r#" { "id" : -12 , "result" : [] } "#).as_deref(), Some("-12"));
    // Nested ids are not the message's; an object is no id.
    assert_eq!(id(r#"{"result":{"id":5}}"#), None);
    assert_eq!(id(r#"{"id":{"x":1},"result":1}"#), None);
    // A key that only starts like "id", or an escaped quote inside a string value.
    assert_eq!(id(r#"{"idx":1,"s":"\"id\":3","id":4}"#).as_deref(), Some("4"));
    assert_eq!(id("not json at all"), None);
}

#[test]
fn depth_is_measured() {
    assert_eq!(scan(r#"{"a":[[{"b":1}]]}"#).depth, 4);
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert_eq!(scan(&deep).depth, 10_000);
    // Brackets inside strings do not count.
    assert_eq!(scan(r#"{"s":"[[[[{{{{"}"#).depth, 1);
}

#[tokio::test]
async fn lines_past_the_bound_are_discarded_but_their_id_kept() {
    let big = format!("{{\"jsonrpc\":\"2.0\",\"result\":{{\"text\":\"{}\"}},\"id\":42}}", "x".repeat(100_000));
    let input = format!("{{\"id\":1}}\r\n\n{big}\n   \n{{\"id\":2}}");
    let mut reader = LineReader::new(input.as_bytes(), 1000);
    let first = reader.next().await.unwrap();
    assert_eq!(first, Some(Frame::Line(br#"{"id":1}"#.to_vec(), Scan { id: Some(b"1".to_vec()), depth: 1 })));
    match reader.next().await.unwrap() {
        Some(Frame::TooLong(scan)) => assert_eq!(scan.id.as_deref(), Some(&b"42"[..])),
        other => panic!("{other:?}"),
    }
    // The last line has no newline: it is read at the end of the stream.
    assert!(matches!(reader.next().await.unwrap(), Some(Frame::Line(l, _)) if l == br#"{"id":2}"#));
    assert_eq!(reader.next().await.unwrap(), None);
}

#[tokio::test]
async fn a_long_line_is_never_held_whole() {
    // 50 MB without a newline, then a good line: the reader's buffers stay within the bound.
    struct Endless(usize);
    impl AsyncRead for Endless {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if self.0 == 0 {
                buf.put_slice(b"\n{\"id\":3}\n");
                self.0 = usize::MAX;
            } else if self.0 != usize::MAX {
                let n = buf.remaining().min(self.0);
                buf.put_slice(&vec![b'z'; n]);
                self.0 -= n;
            }
            std::task::Poll::Ready(Ok(()))
        }
    }
    let mut reader = LineReader::new(Endless(50 << 20), 4096);
    assert!(matches!(reader.next().await.unwrap(), Some(Frame::TooLong(_))));
    assert!(reader.line.capacity() <= 4096 && reader.buf.capacity() <= CHUNK);
    assert!(matches!(reader.next().await.unwrap(), Some(Frame::Line(l, _)) if l == br#"{"id":3}"#));
}

#[tokio::test]
async fn a_dropped_read_loses_and_repeats_nothing() {
    use tokio::io::AsyncWriteExt;
    let (mut writer, reader) = tokio::io::duplex(1024);
    let mut lines = LineReader::new(reader, 1000);
    writer.write_all(b"{\"id\":1}\n").await.unwrap();
    assert!(matches!(lines.next().await.unwrap(), Some(Frame::Line(l, _)) if l == br#"{"id":1}"#));
    // rmcp drops a pending receive when it has something else to do.
    for _ in 0..3 {
        assert!(tokio::time::timeout(std::time::Duration::from_millis(20), lines.next()).await.is_err());
    }
    writer.write_all(b"{\"id\":2}\n").await.unwrap();
    assert!(matches!(lines.next().await.unwrap(), Some(Frame::Line(l, _)) if l == br#"{"id":2}"#));
    drop(writer);
    assert_eq!(lines.next().await.unwrap(), None);
}

#[test]
fn stderr_is_split_cut_and_never_held_past_a_line() {
    let mut lines = StderrLines::default();
    let mut seen: Vec<(Vec<u8>, bool)> = Vec::new();
    let mut input = b"progress 1\rprogress 2\r\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 150_000));
    input.extend(b"\n\xff\xfe not utf-8\ntail without newline");
    for chunk in input.chunks(4096) {
        lines.feed(chunk, |line, cut| seen.push((line.to_vec(), cut)));
        assert!(lines.line.capacity() <= 2 * STDERR_LINE, "held {} bytes", lines.line.capacity());
    }
    lines.finish(|line, cut| seen.push((line.to_vec(), cut)));
    let expected: Vec<(Vec<u8>, bool)> = vec![
        (b"progress 1".to_vec(), false),
        (b"progress 2".to_vec(), false),
        (vec![b'x'; STDERR_LINE], true),
        (b"\xff\xfe not utf-8".to_vec(), false),
        (b"tail without newline".to_vec(), false),
    ];
    assert_eq!(seen, expected);
}

#[test]
fn stderr_logging_is_rate_limited_per_server() {
    let mut limiter = LineLimiter::new();
    let start = limiter.at;
    let admitted = (0..10_000).filter(|_| limiter.admit(start)).count();
    assert_eq!(admitted, STDERR_BURST as usize, "a burst, then nothing at the same instant");
    let later = start + std::time::Duration::from_secs(1);
    let admitted = (0..10_000).filter(|_| limiter.admit(later)).count();
    assert_eq!(admitted, STDERR_RATE as usize, "then the rate");
    assert_eq!(limiter.dropped, 20_000 - (STDERR_BURST + STDERR_RATE) as u64);
}

//! The stdio transport of a federated server: Warden starts the process, writes JSON-RPC lines
//! to its stdin and reads its stdout through [`LineReader`] (each line bounded by the server's
//! `max_response_bytes`) and [`answers::decode`], so an oversized or unreadable answer fails
//! the request it answers at once and a result of `tools/call` passes through as bytes. Its
//! stderr goes to the log through [`frame::log_stderr`].
//!
//! Replaces rmcp's `TokioChildProcess`, whose line codec holds a line whole (up to its own
//! limit), drops what it cannot parse (the caller then waits for its timeout) and builds every
//! result into rmcp's types.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::RoleClient;
use rmcp::model::{ClientJsonRpcMessage, ClientNotification, ClientRequest, ServerJsonRpcMessage};
use rmcp::transport::Transport;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, ChildStdout};

use super::answers::{self, Decoded, Known, Ledger, Stash, Unreadable};
use super::frame::{self, Frame, LineReader};

/// One running stdio server.
pub struct Stdio {
    server: String,
    child: Child,
    stdin: Arc<tokio::sync::Mutex<ChildStdin>>,
    stdout: LineReader<ChildStdout>,
    ledger: Arc<Ledger>,
    stash: Arc<Stash>,
    /// Answers Warden made (failures) waiting to be handed to rmcp.
    queue: VecDeque<ServerJsonRpcMessage>,
    /// When an unreadable answer was last logged (one line per 10 s at most).
    warned: Option<Instant>,
}

impl Stdio {
    /// Starts `command` with piped stdio; lines it writes are bounded by `max_bytes`.
    pub fn spawn(mut command: tokio::process::Command, server: &str, max_bytes: usize, stash: Arc<Stash>) -> std::io::Result<Self> {
        command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn()?;
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take()) else {
            return Err(std::io::Error::other("the child's stdio is not piped"));
        };
        tokio::spawn(frame::log_stderr(server.to_owned(), stderr));
        Ok(Self {
            server: server.to_owned(),
            child,
            stdin: Arc::new(tokio::sync::Mutex::new(stdin)),
            stdout: LineReader::new(stdout, max_bytes),
            ledger: Arc::new(Ledger::default()),
            stash,
            queue: VecDeque::new(),
            warned: None,
        })
    }

    fn warn(&mut self, why: Unreadable, attributed: bool) {
        if self.warned.is_some_and(|at| at.elapsed() < Duration::from_secs(10)) {
            return;
        }
        self.warned = Some(Instant::now());
        tracing::warn!(server = %self.server, ?why, attributed, "a federated server's answer could not be read; the request it answered failed");
    }

    /// Fails every request in flight with `why`.
    fn fail_all(&mut self, why: Unreadable) {
        for id in self.ledger.fail_all() {
            self.queue.push_back(why.answer(id));
        }
    }
}

impl Transport<RoleClient> for Stdio {
    type Error = std::io::Error;

    fn send(&mut self, item: ClientJsonRpcMessage) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        match &item {
            ClientJsonRpcMessage::Request(r) => self.ledger.sent(r.id.clone(), matches!(r.request, ClientRequest::CallToolRequest(_))),
            ClientJsonRpcMessage::Notification(n) => {
                if let ClientNotification::CancelledNotification(c) = &n.notification
                    && let Some(id) = &c.params.request_id
                {
                    self.ledger.cancelled(id);
                }
            }
            _ => {}
        }
        let line = serde_json::to_vec(&item).map(|mut b| {
            b.push(b'\n');
            b
        });
        let stdin = Arc::clone(&self.stdin);
        async move {
            let line = line.map_err(std::io::Error::other)?;
            let mut stdin = stdin.lock().await;
            stdin.write_all(&line).await?;
            stdin.flush().await
        }
    }

    async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
        loop {
            if let Some(message) = self.queue.pop_front() {
                return Some(message);
            }
            let decoded = match self.stdout.next().await {
                Ok(Some(Frame::TooLong(scan))) => {
                    Decoded::Unreadable { id: scan.id.as_deref().and_then(|id| serde_json::from_slice(id).ok()), why: Unreadable::TooLarge }
                }
                Ok(Some(Frame::Line(bytes, scan))) => answers::decode(bytes, &scan, |id| self.ledger.is_call(id), &self.stash),
                Ok(None) | Err(_) => return None,
            };
            match decoded {
                Decoded::Message(message) => {
                    let Some(id) = answers::answer_id(&message) else { return Some(message) };
                    match self.ledger.answered(id) {
                        Known::InFlight => return Some(message),
                        // A late answer to a request given up on: dropped, as the spec allows.
                        Known::Late => {}
                        Known::Unknown => {
                            self.warn(Unreadable::Invalid(answers::UNKNOWN_ID), false);
                            self.fail_all(Unreadable::Invalid(answers::UNKNOWN_ID));
                        }
                    }
                }
                Decoded::Unreadable { id: Some(id), why } if self.ledger.answered(&id) == Known::InFlight => {
                    self.warn(why, true);
                    return Some(why.answer(id));
                }
                Decoded::Unreadable { why, .. } => {
                    self.warn(why, false);
                    self.fail_all(why);
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(3), self.child.wait()).await;
        Ok(())
    }
}

//! Headless Chromium for the end-to-end tests, driven over the Chrome DevTools Protocol on
//! a pipe (`--remote-debugging-pipe`: JSON messages, each ended by a NUL byte, read from
//! the browser's fd 3 and written to its fd 4), so no WebSocket client is needed.
//!
//! std's `Command` cannot hand a child descriptors above 2 without `unsafe` (`pre_exec`),
//! which the workspace forbids: `sh` maps them (`3<&0 4>&1`) and `exec`s Chromium, whose
//! stdin and stdout then carry the protocol.
//!
//! Why not `--dump-dom` with `--virtual-time-budget`: virtual time does not wait for a
//! streamed response, so the page is dumped mid-run (at 50 % here), and waiting longer
//! would mean sleeping. Over the protocol a test waits on the page itself (a
//! `MutationObserver` promise, awaited by `Runtime.evaluate`), with a deadline.
//!
//! Chromium comes from Debian's `chromium` package; `.ci/run` installs it when missing.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)] // each test uses a part

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

/// Where Debian's `chromium` package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// A headless Chromium with a profile of its own and one page; closed (killed if need be)
/// when dropped.
pub struct Chromium {
    child: Child,
    commands: ChildStdin,
    /// The browser's messages (answers and events); disconnects when it exits.
    messages: Receiver<Value>,
    next_id: u64,
    /// The page's session.
    session: String,
    /// The profile and the browser's stderr.
    scratch: PathBuf,
    /// How long one wait may take before the test fails.
    limit: Duration,
}

impl Chromium {
    /// Starts Chromium (window `width`×`height`) with a blank page; every later wait for it
    /// fails the test after `limit`.
    pub fn launch(width: u32, height: u32, limit: Duration) -> Self {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: install Debian's `chromium` package (`bash .ci/run` installs it when it is missing)"
        );
        let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("chromium-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch).unwrap();
        let mut child = Command::new("sh")
            .args(["-c", r#"exec "$0" "$@" 3<&0 4>&1 </dev/null >/dev/null"#, CHROMIUM])
            .args([
                "--headless=new",
                "--disable-gpu",
                "--no-sandbox", // as root in CI
                "--no-first-run",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
                &format!("--window-size={width},{height}"),
                &format!("--user-data-dir={}", scratch.join("profile").display()),
                "about:blank",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(scratch.join("chromium.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMIUM}: {e}"));
        let commands = child.stdin.take().unwrap();
        let replies = BufReader::new(child.stdout.take().unwrap());
        let (sender, messages) = mpsc::channel();
        std::thread::spawn(move || {
            for message in replies.split(0) {
                let Ok(message) = message else { break };
                let Ok(message) = serde_json::from_slice::<Value>(&message) else { break };
                if sender.send(message).is_err() {
                    break;
                }
            }
        });
        let mut chromium = Self { child, commands, messages, next_id: 0, session: String::new(), scratch, limit };
        let target = chromium.browser_call("Target.createTarget", json!({"url": "about:blank"}));
        let attached =
            chromium.browser_call("Target.attachToTarget", json!({"targetId": target["targetId"], "flatten": true}));
        chromium.session = attached["sessionId"].as_str().unwrap().to_owned();
        chromium.call("Page.enable", json!({}));
        chromium.call("Page.setLifecycleEventsEnabled", json!({"enabled": true}));
        chromium
    }

    /// What Chromium wrote to stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.scratch.join("chromium.log")).unwrap_or_default()
    }

    /// The next message from the browser.
    fn receive(&self) -> Value {
        match self.messages.recv_timeout(self.limit) {
            Ok(message) => message,
            Err(RecvTimeoutError::Timeout) => panic!("Chromium said nothing for {:?}:\n{}", self.limit, self.log()),
            Err(RecvTimeoutError::Disconnected) => panic!("Chromium exited:\n{}", self.log()),
        }
    }

    fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> u64 {
        self.next_id += 1;
        let mut command = json!({"id": self.next_id, "method": method, "params": params});
        if let Some(session) = session {
            command["sessionId"] = session.into();
        }
        let mut bytes = serde_json::to_vec(&command).unwrap();
        bytes.push(0);
        self.commands.write_all(&bytes).and_then(|()| self.commands.flush()).unwrap_or_else(|e| {
            panic!("cannot send {method} to Chromium: {e}\n{}", self.log());
        });
        self.next_id
    }

    /// Sends a command and returns its result, passing over the events that come first.
    fn call_in(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.send(session, method, params);
        loop {
            let mut message = self.receive();
            if message["id"] == id {
                if let Some(error) = message.get("error") {
                    panic!("Chromium refused {method}: {error}");
                }
                return message["result"].take();
            }
        }
    }

    fn browser_call(&mut self, method: &str, params: Value) -> Value {
        self.call_in(None, method, params)
    }

    /// A command to the page.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.call_in(Some(&session), method, params)
    }

    /// Loads `url` in the page and returns once its `load` event has fired.
    pub fn navigate(&mut self, url: &str) {
        let navigated = self.call("Page.navigate", json!({"url": url}));
        if let Some(error) = navigated.get("errorText") {
            panic!("Chromium cannot load {url}: {error}");
        }
        let loader = navigated["loaderId"].clone();
        loop {
            let event = self.receive();
            if event["method"] == "Page.lifecycleEvent"
                && event["sessionId"] == self.session.as_str()
                && event["params"]["name"] == "load"
                && event["params"]["loaderId"] == loader
            {
                return;
            }
        }
    }

    /// Evaluates `expression` in the page (awaiting it if it is a promise) and returns its
    /// value as JSON; an exception fails the test.
    pub fn eval(&mut self, expression: &str) -> Value {
        let mut answer = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "awaitPromise": true, "returnByValue": true, "userGesture": true}),
        );
        if let Some(exception) = answer.get("exceptionDetails") {
            panic!("the page threw {exception}\nevaluating {expression}");
        }
        answer["result"]["value"].take()
    }

    /// Saves a PNG of the whole page (not only the window) to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let size = self.call("Page.getLayoutMetrics", json!({}))["cssContentSize"].take();
        let clip = json!({"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1});
        let shot =
            self.call("Page.captureScreenshot", json!({"format": "png", "captureBeyondViewport": true, "clip": clip}));
        let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
        std::fs::write(path, png).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    /// Closes the browser and waits for it to exit.
    pub fn close(mut self) {
        self.send(None, "Browser.close", json!({}));
        // Its pipe closes when it exits.
        loop {
            match self.messages.recv_timeout(self.limit) {
                Ok(_) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("Chromium did not close within {:?}", self.limit),
            }
        }
        let status = self.child.wait().unwrap();
        assert!(status.success(), "Chromium exited with {status}:\n{}", self.log());
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- Chromium's stderr ---\n{}\n---", self.log());
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

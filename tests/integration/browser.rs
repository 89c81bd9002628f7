//! The page `pagemind serve` serves, driven in headless Chromium (Debian's `chromium` and
//! `chromium-driver`, over the W3C WebDriver protocol): send a message and watch the reply
//! stream in, edit a core-memory block and see it in the next prompt's working context, upload
//! a file and see it among the sources. `PAGEMIND_SCREENSHOTS=DIR` saves screenshots there (the
//! ones in docs/ were made so).

use crate::serve::{http, serve};
use crate::util::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one browser session, both ended when dropped.
struct Browser {
    driver: Child,
    base: String,
    session: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = ureq::delete(&format!("{}/session/{}", self.base, self.session)).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The browser, or `None` (saying so) where Chromium is not installed; in CI (`CI` set) a
/// missing browser fails the test, since `.ci/run` installs it.
fn browser(profile: &Path) -> Option<Browser> {
    if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
        let msg = "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)";
        crate::util::skip(msg);
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // Its log goes nowhere: a pipe nobody reads would end it with SIGPIPE at the next line.
    let driver = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let t = Instant::now();
    while ureq::get(&format!("{base}/status")).call().is_err() {
        assert!(t.elapsed() < Duration::from_secs(20), "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,900",
    ];
    let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
        "goog:chromeOptions": {"binary": CHROMIUM, "args": args}}}});
    let r: Value = match ureq::post(&format!("{base}/session")).send_json(caps) {
        Ok(r) => r.into_json().unwrap(),
        Err(ureq::Error::Status(_, r)) => panic!("chromedriver gave no session: {}", r.into_string().unwrap()),
        Err(e) => panic!("chromedriver gave no session: {e}"),
    };
    let session = r["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("{r}")).to_string();
    Some(Browser { driver, base, session })
}

impl Browser {
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let r = match body {
            Some(b) => ureq::request(method, &url).send_json(b),
            None => ureq::request(method, &url).call(),
        };
        match r {
            Ok(r) => r.into_json::<Value>().unwrap()["value"].clone(),
            Err(ureq::Error::Status(_, r)) => panic!("{method} {path}: {}", r.into_string().unwrap()),
            Err(e) => panic!("{method} {path}: {e}"),
        }
    }

    fn js(&self, script: &str) -> Value {
        self.cmd("POST", "/execute/sync", Some(json!({"script": script, "args": []})))
    }

    fn find(&self, css: &str) -> String {
        let v = self.cmd("POST", "/element", Some(json!({"using": "css selector", "value": css})));
        v[ELEMENT].as_str().unwrap_or_else(|| panic!("{css}: {v}")).to_string()
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/clear"), Some(json!({})));
        self.cmd("POST", &format!("/element/{e}/value"), Some(json!({ "text": text })));
    }

    /// Wait until the page has no request in flight and has not changed for half a second.
    fn settle(&self) {
        self.js("window.changes = 0; new MutationObserver(() => window.changes++).observe(document.body, {subtree: true, childList: true, characterData: true});");
        let t = Instant::now();
        loop {
            self.js("window.changes = 0");
            std::thread::sleep(Duration::from_millis(500));
            if self.js("return window.changes").as_u64() == Some(0) {
                return;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "the page kept changing");
        }
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    /// Poll `script` until it returns something truthy; that value.
    fn wait_for(&self, what: &str, secs: u64, script: &str) -> Value {
        let t = Instant::now();
        loop {
            let v = self.js(script);
            if !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0)) {
                return v;
            }
            assert!(t.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&self, name: &str) {
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(self.cmd("GET", "/screenshot", None).as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        if let Some(dir) = std::env::var_os("PAGEMIND_SCREENSHOTS") {
            std::fs::write(Path::new(&dir).join(name), png).unwrap();
        }
    }
}

#[test]
fn the_page_streams_a_reply_edits_core_memory_and_uploads_a_file() {
    let profile = tempfile::tempdir().unwrap();
    let Some(b) = browser(profile.path()) else { return };
    let home = home_with_models();
    let s = serve(home.path(), &[]);
    assert_eq!(http(&s, "POST", "/api/agents", Some(json!({"name": "ada"})), None).0, 201);
    b.cmd("POST", "/url", Some(json!({ "url": format!("{}/", s.base) })));
    b.wait_for(
        "the agent list",
        30,
        "return document.querySelector('#agent').value === 'ada' && document.querySelector('#blocks textarea')",
    );

    // A message: the reply arrives in pieces (a MutationObserver counts the bubble's updates).
    b.js("window.updates = 0; new MutationObserver(() => window.updates++).observe(document.querySelector('#log'), {subtree: true, childList: true, characterData: true});");
    b.type_into("#text", "Hello! I am Ada and I grow tomatoes.");
    b.click("#send button");
    b.wait_for("the user's bubble", 10, "return document.querySelector('.msg.user')?.textContent");
    let reply = b.wait_for(
        "the agent's reply",
        300,
        "const a = document.querySelectorAll('.msg.agent'); const q = document.querySelector('#queue').textContent; \
         return a.length && q.includes('send_message') && a[a.length - 1].textContent",
    );
    assert!(!reply.as_str().unwrap().trim().is_empty());
    let updates = b.js("return window.updates").as_u64().unwrap();
    assert!(updates >= 3, "the reply streamed in ({updates} updates of the chat log)");
    b.screenshot("serve-chat.png");

    // Edit the human block: the working context the next prompt holds shows it.
    b.settle();
    b.type_into("textarea[data-label='human']", "Name: Ada. Grows tomatoes on a balcony in Lisbon.");
    b.js("[...document.querySelectorAll('#blocks button')].find((x) => x.textContent === 'save human').click()");
    b.wait_for(
        "the edit in the next prompt's working context",
        30,
        "return document.querySelector('#wctext').textContent.includes('balcony in Lisbon')",
    );
    let (_, mem) = http(&s, "GET", "/api/agents/ada/memory", None, None);
    assert!(mem["working_context"].as_str().unwrap().contains("balcony in Lisbon"), "{mem}");

    // Upload a file through the file input: it becomes a source with chunks.
    let docs = tempfile::tempdir().unwrap();
    let f = docs.path().join("greenhouse.md");
    std::fs::write(&f, "# Greenhouse\n\nThe greenhouse door code is 4471. Water the tomatoes at dawn.\n").unwrap();
    let input = b.find("#file");
    b.cmd("POST", &format!("/element/{input}/value"), Some(json!({ "text": f.display().to_string() })));
    let src = b.wait_for(
        "the uploaded source",
        120,
        "const t = document.querySelector('#sources').textContent; return t.includes('greenhouse.md') && t",
    );
    assert!(src.as_str().unwrap().contains("chunks"), "{src}");
    b.type_into("#archq", "door code");
    b.click("#archf button");
    let hits = b.wait_for(
        "archival results",
        30,
        "return document.querySelector('#arch').textContent || (document.querySelector('#status').className === 'err' && 'error: ' + document.querySelector('#status').textContent)",
    );
    assert!(hits.as_str().unwrap().contains("4471"), "{hits}");
    b.js("document.querySelector('details').open = true; document.querySelector('#memory').scrollTop = 1e6;");
    b.screenshot("serve-memory.png");
}

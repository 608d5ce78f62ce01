//! A real SMTP server for the tests (PyPI's aiosmtpd, from the `.venv` that
//! `scripts/tools.sh` makes), writing what it receives into a Maildir, and a reader of what it
//! received.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A real SMTP server writing what it receives into a Maildir.
pub struct Smtp {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

fn python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let py = root.join(".venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: `make test` makes it (scripts/tools.sh)",
        py.display()
    );
    py
}

impl Smtp {
    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    pub async fn start() -> Smtp {
        let dir = std::env::temp_dir().join(format!("etal-smtp-{}", uuid::Uuid::new_v4()));
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let mut s = Smtp {
            port: Self::free_port(),
            dir,
            child: None,
        };
        s.up().await;
        s
    }

    pub async fn up(&mut self) {
        let child = Command::new(python())
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{}", self.port),
                "-c",
                "aiosmtpd.handlers.Mailbox",
                self.dir.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("aiosmtpd did not listen on {}", self.port);
    }

    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received, raw.
    pub fn received(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(self.dir.join(sub)) else {
                continue;
            };
            for e in entries.flatten() {
                out.push(std::fs::read(e.path()).unwrap());
            }
        }
        out
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        self.down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A received message: its headers, text body and attachments.
#[derive(Debug)]
pub struct Mail {
    pub message_id: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub attachments: Vec<(String, Vec<u8>)>,
}

pub fn parse(raw: &[u8]) -> Mail {
    let m = mailparse::parse_mail(raw).expect("a MIME message");
    let header = |name: &str| {
        m.headers
            .iter()
            .find(|h| h.get_key().eq_ignore_ascii_case(name))
            .map(|h| h.get_value())
            .unwrap_or_default()
    };
    let mut mail = Mail {
        message_id: header("Message-ID"),
        to: header("To"),
        subject: header("Subject"),
        text: String::new(),
        html: String::new(),
        attachments: Vec::new(),
    };
    fn walk(part: &mailparse::ParsedMail, mail: &mut Mail) {
        if part.subparts.is_empty() {
            let disposition = part.get_content_disposition();
            if disposition.disposition == mailparse::DispositionType::Attachment {
                let name = disposition
                    .params
                    .get("filename")
                    .cloned()
                    .unwrap_or_default();
                mail.attachments
                    .push((name, part.get_body_raw().expect("attachment")));
            } else if part.ctype.mimetype == "text/plain" {
                mail.text = part.get_body().expect("text");
            } else if part.ctype.mimetype == "text/html" {
                mail.html = part.get_body().expect("html");
            }
        }
        for p in &part.subparts {
            walk(p, mail);
        }
    }
    walk(&m, &mut mail);
    mail
}

/// Messages received, by Message-ID, with how many times each came.
pub fn counts(smtp: &Smtp) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for raw in smtp.received() {
        *out.entry(parse(&raw).message_id).or_default() += 1;
    }
    out
}

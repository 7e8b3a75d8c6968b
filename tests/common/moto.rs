//! A moto S3 server (the real S3 API, on loopback) for the tests that run
//! on S3: one request at a time (its conditional writes are atomic only
//! then: see `tests/independent/moto_serial.py`).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tracevault_vault::Store;

use super::{client, python};

/// A moto S3 server on a free loopback port, killed on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    pub async fn start(bucket: &str) -> Moto {
        // moto's own WSGI app, one request at a time (its conditional
        // writes are not atomic on its threaded server): see the script.
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/independent/moto_serial.py");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(python())
            .arg(&script)
            .args(["127.0.0.1", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        let moto = Moto { child, endpoint };
        let c = client();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = c.put(format!("{}/{bucket}", moto.endpoint)).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "moto did not come up");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        moto
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    pub fn store(&self, url: &str) -> Store {
        let env = self.env();
        let opts: Vec<(&str, &str)> = vec![
            ("aws_endpoint", env[0].1.as_str()),
            ("aws_allow_http", "true"),
            ("aws_access_key_id", "testing"),
            ("aws_secret_access_key", "testing"),
            ("aws_region", "us-east-1"),
        ];
        Store::from_url_with(url, &opts).unwrap()
    }
}

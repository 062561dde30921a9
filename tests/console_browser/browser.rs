//! A headless Chromium driven over WebDriver: Debian's `chromedriver` as a child process on
//! 127.0.0.1 (port 0, the port it reports), one browser session per test, both stopped by their
//! ids when the test ends, whatever its outcome.
//!
//! Outside CI a machine without `chromedriver` skips the browser tests with a message; in CI
//! (`CI=true`, where `.ci/run` installs `chromium` and `chromium-driver`) its absence fails them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::elements::Element;
use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::common::in_ci;
use crate::common::wait::{DEFAULT_WITHIN, PROBE_EVERY};

/// Where `chromedriver` is: `AIOPS_CHROMEDRIVER`, else the first on `PATH`.
fn chromedriver() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AIOPS_CHROMEDRIVER") {
        return Some(PathBuf::from(p));
    }
    on_path("chromedriver")
}

/// Where the browser is: `AIOPS_CHROMIUM`, else `chromium` on `PATH` (Debian's package).
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AIOPS_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    on_path("chromium")
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The desktop window every page is seen (and photographed) in.
pub const DESKTOP: (u32, u32) = (1280, 900);
/// A phone's viewport (a 390 CSS px wide phone held upright).
pub const PHONE: (u32, u32) = (390, 844);

/// The key code WebDriver uses for Tab.
const TAB: char = '\u{E004}';

/// A browser session and the `chromedriver` serving it.
pub struct Browser {
    pub client: Client,
    driver: Child,
}

impl Browser {
    /// Starts `chromedriver` and a headless Chromium; `None` (with a message) when this machine
    /// has none and this is not CI.
    pub async fn start() -> Option<Browser> {
        let (Some(driver_bin), Some(chromium_bin)) = (chromedriver(), chromium()) else {
            assert!(
                !in_ci(),
                "CI needs chromium and chromium-driver (.ci/run installs them)"
            );
            eprintln!(
                "skipping the browser test: chromium and chromedriver are not installed \
                 (apt-get install chromium chromium-driver, or set AIOPS_CHROMIUM and \
                 AIOPS_CHROMEDRIVER)"
            );
            return None;
        };
        let mut driver = Command::new(&driver_bin)
            .args(["--port=0", "--allowed-ips=127.0.0.1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", driver_bin.display()));
        let port = match driver_port(driver.stdout.take().unwrap()) {
            Some(p) => p,
            None => {
                let _ = driver.kill();
                let _ = driver.wait();
                panic!(
                    "{} did not say which port it listens on",
                    driver_bin.display()
                );
            }
        };
        let client = match connect(port, &chromium_bin).await {
            Ok(c) => c,
            Err(e) => {
                let _ = driver.kill();
                let _ = driver.wait();
                panic!("a Chromium session through chromedriver: {e}");
            }
        };
        Some(Browser { client, driver })
    }

    /// Opens `url` and waits until the document has loaded.
    pub async fn open(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    }

    /// Gives the browser session cookie `token` for the console at `base` (the test's
    /// equivalent of having signed in before). A page of the console's own site is opened first
    /// and the cookie written by script there: chromedriver's add-cookie refuses a cookie for
    /// an IP address host (127.0.0.1) with or without a domain.
    pub async fn use_session(&self, base: &str, token: &str) {
        self.open(&format!("{base}/ui/static/console.css")).await;
        let cookie = format!(
            "{}={token}; path=/ui; samesite=lax",
            aiops::ui::session::SESSION_COOKIE
        );
        self.eval::<serde_json::Value>(
            "document.cookie = arguments[0]; return null;",
            vec![cookie.into()],
        )
        .await;
    }

    /// The one element `css` selects, waited for (pages may still be loading); on timeout,
    /// fails with the page the browser shows instead.
    pub async fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + DEFAULT_WITHIN;
        loop {
            if let Ok(e) = self.client.find(Locator::Css(css)).await {
                return e;
            }
            if Instant::now() > deadline {
                let url = self.client.current_url().await.map(|u| u.to_string());
                let text = self.client.find(Locator::Css("body")).await;
                let text = match text {
                    Ok(body) => body.text().await.unwrap_or_default(),
                    Err(e) => e.to_string(),
                };
                panic!("no element {css} within {DEFAULT_WITHIN:?} on {url:?}:\n{text}");
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }

    /// Whether an element `css` is on the current page now (no wait).
    pub async fn has(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap()
            .is_empty()
    }

    /// The visible text of the element `css` selects.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    /// Runs `script` (a function body; `arguments` are `args`) and decodes what it returns.
    pub async fn eval<T: serde::de::DeserializeOwned>(
        &self,
        script: &str,
        args: Vec<serde_json::Value>,
    ) -> T {
        let v = self.client.execute(script, args).await.unwrap();
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"))
    }

    /// Presses Tab once, as a person at the keyboard does.
    pub async fn tab(&self) {
        let keys = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: TAB })
            .then(KeyAction::Up { value: TAB });
        self.client.perform_actions(keys).await.unwrap();
    }

    /// Resizes the window to `(width, height)` CSS pixels.
    pub async fn resize(&self, (w, h): (u32, u32)) {
        self.client.set_window_size(w, h).await.unwrap();
    }

    /// Writes what the window shows to `<dir>/<name>.png`.
    pub async fn screenshot(&self, dir: &Path, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Ends the session (Chromium exits) and stops `chromedriver`.
    pub async fn close(mut self) {
        let client = self.client.clone();
        let _ = tokio::time::timeout(Duration::from_secs(10), client.close()).await;
        self.stop_driver();
    }

    fn stop_driver(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    /// A test that panics never reaches [`Browser::close`]: its chromedriver is stopped by id
    /// here, and Chromium, whose session it held, exits with it.
    fn drop(&mut self) {
        self.stop_driver();
    }
}

/// Reads chromedriver's output until it names its port ("… started successfully on port N.").
fn driver_port(out: std::process::ChildStdout) -> Option<u16> {
    let mut lines = BufReader::new(out).lines();
    let port = lines.by_ref().map_while(Result::ok).find_map(|line| {
        line.split("started successfully on port ")
            .nth(1)
            .and_then(|rest| rest.trim_end_matches('.').trim().parse().ok())
    });
    // Keep draining its output so that chromedriver never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    port
}

/// A WebDriver session with a headless Chromium at the desktop size, in English, without the
/// sandbox (the tests run as root in CI's container, where Chromium's sandbox cannot start).
async fn connect(port: u16, chromium: &Path) -> Result<Client, fantoccini::error::NewSessionError> {
    let mut caps = Capabilities::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--lang=en-US",
                format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
            ],
        }),
    );
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
}

/// Where screenshots go: `$AIOPS_SCREENSHOTS`, else `console-screenshots/` in cargo's target
/// directory.
pub fn screenshot_dir() -> PathBuf {
    let dir = match std::env::var_os("AIOPS_SCREENSHOTS") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("the target directory")
            .join("console-screenshots"),
    };
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

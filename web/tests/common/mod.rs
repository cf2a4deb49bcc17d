//! The real application on 127.0.0.1:0 against a fresh database (SQLite file, or a new
//! PostgreSQL database when FABRIQUE_TEST_POSTGRES_URL is set).
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod process;

use fabrique_controller::domain::job::{Job, NewJob};
use fabrique_controller::domain::{
    CredentialKind, Lang, Machine, MachineId, MachineInput, MachineState, NewUser, Role, Secret,
    User,
};
use fabrique_controller::lab::now;
use fabrique_controller::testing::fresh_database_url;
use fabrique_controller::{Lab, Store};
use fabrique_web::config::{Config, Layer};
use reqwest::redirect::Policy;
use tokio::sync::oneshot;

pub const PASSWORD: &str = "a long password";

pub struct TestApp {
    pub base: String,
    pub lab: Lab,
    pub database_url: String,
    pub runtime: fabrique_controller::runtime::Runtime,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Layer::default()).await
}

pub async fn spawn_app_with(layer: Layer) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database_url(dir.path()).await.unwrap();
    spawn_node(dir, database_url, layer).await
}

/// Another Fabrique node on the database of `other` (as the labs of a network share one
/// PostgreSQL), with its own data folder and the settings of `layer` (its `lab_name`).
pub async fn spawn_second_node(other: &TestApp, layer: Layer) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    spawn_node(dir, other.database_url.clone(), layer).await
}

async fn spawn_node(dir: tempfile::TempDir, database_url: String, mut layer: Layer) -> TestApp {
    if layer.data_dir.is_none() {
        layer.data_dir = Some(dir.path().to_path_buf());
    }
    let store = Store::open(&database_url).await.unwrap();
    let lab = Lab::new(store).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    // The settings say where the server listens, as `fabrique serve` would.
    if layer.listen.is_none() {
        layer.listen = Some(listener.local_addr().unwrap().to_string());
    }
    let config = Config::build(&[("test", layer)]).unwrap();
    let state = fabrique_web::state(lab, config).await.unwrap();
    let lab = state.lab.clone();
    let runtime = state.runtime.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(fabrique_web::serve(listener, state, async {
        let _ = stopped.await;
    }));
    TestApp {
        base,
        lab,
        database_url,
        runtime,
        dir,
        stop: Some(stop),
    }
}

/// A browser-like client: keeps cookies, does not follow redirects (tests look at them).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// The CSRF token of the forms on a page.
pub fn csrf_in(html: &str) -> String {
    let start = html
        .find("name=\"csrf_token\" value=\"")
        .expect("a form with a CSRF token")
        + 25;
    html[start..].split('"').next().unwrap().to_string()
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn add_user(&self, username: &str, role: Role) -> User {
        let new = NewUser::parse(
            username,
            "",
            "",
            role,
            Lang::Fr,
            CredentialKind::Password,
            Secret::new(PASSWORD),
        )
        .unwrap();
        self.lab.create_user_unchecked(&new, now()).await.unwrap()
    }

    /// A machine made by `manager` and put in service (idle).
    pub async fn add_idle_machine(&self, manager: &User, input: &MachineInput) -> Machine {
        let machine = self
            .lab
            .create_machine(manager, input, now())
            .await
            .unwrap();
        self.lab
            .set_machine_state(manager, machine.id, MachineState::Idle, "", now())
            .await
            .unwrap();
        machine
    }

    /// Lets printers run after hours, so a test that starts a print runs at any time of day.
    pub async fn let_printers_run_unattended(&self, manager: &User) {
        let settings = fabrique_controller::domain::calendar::CalendarSettings {
            printers_unattended: true,
            ..Default::default()
        };
        self.lab
            .set_calendar_settings(manager, &settings)
            .await
            .unwrap();
    }

    /// A GRBL machine (a laser or a mill, as `input` says) on the project's virtual GRBL
    /// behind a pseudo-terminal in the test's folder: made by `manager` with `input`'s
    /// connection pointed at the virtual machine, idle, its task told. The virtual GRBL
    /// runs until the token is cancelled; the handle gives it back, with its records.
    pub async fn add_virtual_grbl(
        &self,
        manager: &User,
        mut input: MachineInput,
        sim: fabrique_machines::sim::grbl::SimConfig,
    ) -> (
        Machine,
        tokio_util::sync::CancellationToken,
        tokio::task::JoinHandle<fabrique_machines::sim::grbl::VirtualGrbl>,
    ) {
        use fabrique_machines::sim::grbl::{LinkConfig, VirtualGrbl, serve_at};
        let stop = tokio_util::sync::CancellationToken::new();
        let link = self.dir.path().join(format!("grbl-{}", next_number()));
        let sim = VirtualGrbl::new(sim);
        let (at, stop_serving) = (link.clone(), stop.clone());
        let served = tokio::spawn(async move {
            serve_at(&at, sim, LinkConfig::default(), stop_serving)
                .await
                .unwrap()
        });
        while !link.exists() {
            tokio::task::yield_now().await;
        }
        input.connection = fabrique_controller::domain::Connection::SerialGrbl {
            port: link.display().to_string(),
            baud: 115_200,
        };
        let machine = self.add_idle_machine(manager, &input).await;
        self.runtime.refresh(machine.id).await;
        (machine, stop, served)
    }

    /// A "Prusa MK3S" on a virtual Marlin printer behind a pseudo-terminal, made by
    /// `manager`, idle, its task connected; the printer runs until `stop` is cancelled.
    pub async fn add_virtual_marlin(
        &self,
        manager: &User,
        config: fabrique_machines::sim::marlin::SimConfig,
        stop: &tokio_util::sync::CancellationToken,
    ) -> (Machine, fabrique_machines::sim::marlin::VirtualPrinter) {
        let printer = fabrique_machines::sim::marlin::VirtualPrinter::new(config);
        let link = self.dir.path().join("prusa");
        let (served, at, cancel) = (printer.clone(), link.clone(), stop.clone());
        tokio::spawn(async move { served.run_at_path(&at, cancel).await });
        while !link.exists() {
            tokio::task::yield_now().await;
        }
        let profile = fabrique_controller::domain::MachineProfile::parse(
            ["250", "210", "210"],
            "300",
            "120",
            "",
            "",
            "PLA",
        )
        .unwrap();
        let input = MachineInput::new(
            "Prusa MK3S",
            fabrique_controller::domain::MachineKind::FdmPrinter,
            fabrique_controller::domain::Connection::SerialMarlin {
                port: link.display().to_string(),
                baud: 115_200,
            },
            profile,
            "Atelier",
            "",
        )
        .unwrap();
        let machine = self.add_idle_machine(manager, &input).await;
        self.runtime.refresh(machine.id).await;
        (machine, printer)
    }

    /// The folder the lab keeps job files in.
    pub fn jobs_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("jobs")
    }

    /// A job of `owner` for `content` sent as `name` (to `machine` when given), its file
    /// written into the jobs folder and read by the lab as an upload is.
    pub async fn submit_file(
        &self,
        owner: &User,
        machine: Option<MachineId>,
        name: &str,
        content: &[u8],
    ) -> Job {
        let dir = self.jobs_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let stored_name = format!("t-{}-{name}", next_number());
        std::fs::write(dir.join(&stored_name), content).unwrap();
        let new = NewJob {
            owner: owner.id,
            file_name: name.into(),
            stored_name,
            size_bytes: i64::try_from(content.len()).unwrap(),
            sha256: "0".repeat(64),
            target_machine: machine,
            target_kind: None,
        };
        self.lab.submit_job(owner, &new, &dir, now()).await.unwrap()
    }

    /// A fresh client's CSRF token, from the login page (which sets the cookie).
    pub async fn csrf(&self, client: &reqwest::Client) -> String {
        let html = client
            .get(self.url("/login"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        csrf_in(&html)
    }

    /// Logs `client` in through the login form, as a person would.
    pub async fn login(
        &self,
        client: &reqwest::Client,
        username: &str,
        secret: &str,
    ) -> reqwest::Response {
        let token = self.csrf(client).await;
        client
            .post(self.url("/login"))
            .form(&[
                ("csrf_token", token.as_str()),
                ("username", username),
                ("secret", secret),
                ("next", "/"),
            ])
            .send()
            .await
            .unwrap()
    }

    /// A client signed in as a new account of `role`, and that account.
    pub async fn signed_in(&self, username: &str, role: Role) -> (reqwest::Client, User) {
        let user = self.add_user(username, role).await;
        let client = client();
        let response = self.login(&client, username, PASSWORD).await;
        assert_eq!(response.status(), 303, "login of {username}");
        (client, user)
    }

    /// A page's CSRF token for a signed-in client.
    pub async fn page_csrf(&self, client: &reqwest::Client, path: &str) -> String {
        let html = client
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        csrf_in(&html)
    }
}

/// The text of a page with askama's escapes undone, to look for plain sentences in it.
pub fn unescaped(html: &str) -> String {
    html.replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

/// A number that differs at each call, for file names.
fn next_number() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    u128::from(COUNT.fetch_add(1, Ordering::Relaxed))
}

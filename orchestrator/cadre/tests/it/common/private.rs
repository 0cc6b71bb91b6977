//! Servers of a test's own, for tests that stop or restart them (the shared NATS and PostgreSQL
//! serve every other test in parallel and must never be touched): a `nats-server` with
//! JetStream on a free port ([`PrivateNats`]) and a PostgreSQL cluster made with `initdb` in a
//! temp dir ([`PrivatePg`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A free TCP port on loopback (bound and released; good enough for a server started next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `nats-server -js` of a test's own, on `port`, keeping its store in `dir`.
pub struct PrivateNats {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    /// A configuration file, if the server needs more than the command line gives.
    conf: Option<PathBuf>,
}

impl PrivateNats {
    /// Starts a server with JetStream on `port`, its store in `dir`.
    pub fn start(dir: &Path, port: u16) -> PrivateNats {
        Self::start_conf(dir, port, None)
    }

    /// Starts with `conf` (nats-server configuration text) as its configuration file.
    pub fn start_conf(dir: &Path, port: u16, conf: Option<&str>) -> PrivateNats {
        let conf = conf.map(|text| {
            let path = dir.join("nats.conf");
            std::fs::write(&path, text).unwrap();
            path
        });
        let mut n = PrivateNats {
            child: None,
            port,
            dir: dir.to_path_buf(),
            conf,
        };
        n.up();
        n
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again), on the same port and store.
    pub fn up(&mut self) {
        let mut cmd = Command::new("/usr/sbin/nats-server");
        if let Some(conf) = &self.conf {
            cmd.arg("-c").arg(conf);
        }
        let child = cmd
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (apt install nats-server)");
        self.child = Some(child);
    }

    /// SIGKILL: the server dies without a word.
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.down();
    }
}

/// A PostgreSQL cluster of a test's own: `initdb` into a temp dir (owned by the `postgres`
/// user, since PostgreSQL refuses to run as root) and `pg_ctl` on a free loopback port, trust
/// authentication. Stopped (immediately) when dropped.
pub struct PrivatePg {
    tmp: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl PrivatePg {
    /// Creates and starts the cluster; panics saying what is missing if it cannot.
    pub fn start() -> PrivatePg {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries in /usr/lib/postgresql/<version>/bin")
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .filter(|b| b.join("initdb").is_file())
            .max()
            .expect("an initdb in /usr/lib/postgresql/<version>/bin");
        let tmp = tempfile::tempdir().unwrap();
        let pg = PrivatePg {
            tmp,
            bin,
            port: free_port(),
        };
        let chown = Command::new("chown")
            .args(["-R", "postgres:"])
            .arg(pg.tmp.path())
            .status()
            .unwrap();
        assert!(chown.success(), "chown of the private cluster's dir to postgres");
        let data = pg.data();
        pg.as_postgres(
            "initdb",
            &["-A", "trust", "-U", "postgres", "--no-sync", "-D", &data],
        );
        pg.up();
        pg
    }

    fn data(&self) -> String {
        self.tmp.path().join("data").display().to_string()
    }

    /// Runs one of the server's programs as the `postgres` user; panics with its output if it
    /// fails.
    fn as_postgres(&self, program: &str, args: &[&str]) {
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(program))
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("runuser {program}: {e} (the tests run as root)"));
        assert!(out.status.success(), "{program} {args:?}: {out:?}");
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server and waits until it accepts connections.
    pub fn up(&self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=200",
            self.port,
            self.tmp.path().display()
        );
        let log = self.tmp.path().join("pg.log").display().to_string();
        self.as_postgres(
            "pg_ctl",
            &["-D", &self.data(), "-l", &log, "-o", &opts, "-w", "start"],
        );
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`: no checkpoint,
    /// recovery from the WAL at the next start).
    pub fn crash(&self) {
        self.as_postgres("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .output();
    }
}

//! Test TLS: a private CA and server certificates made with the `openssl`
//! CLI, and a TLS-terminating relay in front of the daemon, as a
//! workspace's HTTPS ingress is, that relays each accepted TLS connection
//! as plain TCP to the daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use tokio::net::{TcpListener, TcpStream};

/// A running relay; it stops when dropped.
pub struct TlsRelay {
    pub addr: SocketAddr,
    /// The certificate (PEM) of the CA that signed the relay's, for `--ca-file`.
    pub cert: PathBuf,
    _ca: TestCa,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a relay on `127.0.0.1:0` to `to`, with a new certificate for
/// `127.0.0.1` and `localhost`.
pub async fn relay(to: &str) -> TlsRelay {
    // A server certificate of a private CA: a self-signed certificate that
    // is also a CA is refused as a server's by rustls (and RFC 5280).
    let ca = TestCa::new();
    let acceptor = ca.acceptor();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let to = to.to_owned();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, to) = (acceptor.clone(), to.clone());
            conns.spawn(async move {
                // A client that refuses the certificate ends here.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut daemon) = TcpStream::connect(&to).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut daemon).await;
            });
        }
    });
    TlsRelay {
        addr,
        cert: ca.ca_cert.clone(),
        _ca: ca,
        task,
    }
}

fn openssl(args: &[&std::ffi::OsStr]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed by scripts/test.sh");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private certificate authority made for one test, and a server
/// certificate for `127.0.0.1` and `localhost` that it signed.
pub struct TestCa {
    /// The CA's certificate (PEM): what a client must trust.
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let (ca_key, ca_cert, key, csr, cert, ext) = (
            p("ca-key.pem"),
            p("ca.pem"),
            p("key.pem"),
            p("server.csr"),
            p("cert.pem"),
            p("ext.cnf"),
        );
        let s = |x: &'static str| std::ffi::OsStr::new(x);
        openssl(&[
            s("req"),
            s("-x509"),
            s("-newkey"),
            s("ec"),
            s("-pkeyopt"),
            s("ec_paramgen_curve:prime256v1"),
            s("-nodes"),
            s("-days"),
            s("1"),
            s("-subj"),
            s("/CN=workspaced test CA"),
            s("-addext"),
            s("basicConstraints=critical,CA:TRUE"),
            s("-addext"),
            s("keyUsage=critical,keyCertSign,cRLSign"),
            s("-keyout"),
            ca_key.as_os_str(),
            s("-out"),
            ca_cert.as_os_str(),
        ]);
        openssl(&[
            s("req"),
            s("-newkey"),
            s("ec"),
            s("-pkeyopt"),
            s("ec_paramgen_curve:prime256v1"),
            s("-nodes"),
            s("-subj"),
            s("/CN=localhost"),
            s("-keyout"),
            key.as_os_str(),
            s("-out"),
            csr.as_os_str(),
        ]);
        std::fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            s("x509"),
            s("-req"),
            s("-in"),
            csr.as_os_str(),
            s("-CA"),
            ca_cert.as_os_str(),
            s("-CAkey"),
            ca_key.as_os_str(),
            s("-set_serial"),
            s("1"),
            s("-days"),
            s("1"),
            s("-extfile"),
            ext.as_os_str(),
            s("-out"),
            cert.as_os_str(),
        ]);
        TestCa {
            ca_cert,
            cert,
            key,
            _dir: dir,
        }
    }

    /// A TLS acceptor with the server certificate.
    pub fn acceptor(&self) -> tokio_native_tls::TlsAcceptor {
        let identity = native_tls::Identity::from_pkcs8(
            &std::fs::read(&self.cert).unwrap(),
            &std::fs::read(&self.key).unwrap(),
        )
        .unwrap();
        native_tls::TlsAcceptor::new(identity).unwrap().into()
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

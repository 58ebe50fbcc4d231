//! Certificate files: `init` layout, modes, refusal to overwrite, loading.

use std::os::unix::fs::PermissionsExt;

use synod_transport::certs::{self, identity_of, CertError};
use synod_transport::{Credentials, Identity};
use synod_wire::NodeId;

#[test]
fn init_writes_private_files_and_never_overwrites_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    let report = certs::init(&dir, 3, 2, false).unwrap();
    let mut names: Vec<String> =
        report.files.iter().map(|p| p.file_name().unwrap().to_str().unwrap().to_owned()).collect();
    names.sort();
    let mut want = vec!["ca.pem".to_owned(), "ca.key".to_owned()];
    for stem in ["node-1", "node-2", "node-3", "client-1", "client-2"] {
        want.push(format!("{stem}.pem"));
        want.push(format!("{stem}.key"));
    }
    want.sort();
    assert_eq!(names, want);
    for file in &report.files {
        let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    let ca_before = std::fs::read(dir.join("ca.pem")).unwrap();

    let err = certs::init(&dir, 3, 2, false).unwrap_err();
    assert!(matches!(err, CertError::Exists { .. }), "{err}");
    // A larger request that would touch existing files writes nothing at all.
    std::fs::remove_file(dir.join("client-2.key")).unwrap();
    assert!(matches!(certs::init(&dir, 4, 2, false), Err(CertError::Exists { .. })));
    assert!(!dir.join("node-4.pem").exists() && !dir.join("client-2.key").exists());
    assert_eq!(std::fs::read(dir.join("ca.pem")).unwrap(), ca_before);

    certs::init(&dir, 4, 2, true).unwrap();
    assert_ne!(std::fs::read(dir.join("ca.pem")).unwrap(), ca_before);
    assert_eq!(std::fs::metadata(dir.join("node-4.key")).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn loaded_credentials_name_their_identity() {
    let tmp = tempfile::tempdir().unwrap();
    certs::init(tmp.path(), 2, 1, false).unwrap();
    let node = Credentials::load(tmp.path(), Identity::Node(NodeId(2))).unwrap();
    assert_eq!(identity_of(node.cert()), Ok(Identity::Node(NodeId(2))));
    let client = Credentials::load(tmp.path(), Identity::Client(1)).unwrap();
    assert_eq!(client.identity(), Identity::Client(1));
    assert_eq!(node.ca(), client.ca());
    // A certificate file renamed to claim another identity is refused.
    std::fs::copy(tmp.path().join("node-1.pem"), tmp.path().join("node-2.pem")).unwrap();
    let err = Credentials::load(tmp.path(), Identity::Node(NodeId(2))).unwrap_err();
    assert!(matches!(err, CertError::WrongIdentity { .. }), "{err}");
    let err = Credentials::load(tmp.path(), Identity::Node(NodeId(9))).unwrap_err();
    assert!(matches!(err, CertError::Io { .. }), "{err}");
}

//! Certificate files: `init` layout, modes, refusal to overwrite, loading.

use std::os::unix::fs::PermissionsExt;

use synod_transport::certs::{self, identity_of, CertError};
use synod_transport::{tls, Credentials, Identity, Node, NodeConfig};
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

#[test]
fn add_signs_with_the_existing_ca_and_never_overwrites_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    certs::init(dir, 1, 1, false).unwrap();
    let report = certs::add(dir, Identity::Node(NodeId(2)), 30, false).unwrap();
    assert_eq!(report.files, vec![dir.join("node-2.pem"), dir.join("node-2.key")]);
    assert!(report.to_string().contains("replica 2 certificate"), "{report}");
    for file in &report.files {
        assert_eq!(std::fs::metadata(file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let before = std::fs::read(dir.join("node-2.pem")).unwrap();
    let err = certs::add(dir, Identity::Node(NodeId(2)), 30, false).unwrap_err();
    assert!(matches!(err, CertError::Exists { .. }), "{err}");
    assert_eq!(std::fs::read(dir.join("node-2.pem")).unwrap(), before);
    certs::add(dir, Identity::Node(NodeId(2)), 30, true).unwrap();
    assert_ne!(std::fs::read(dir.join("node-2.pem")).unwrap(), before);

    // The new certificate names its identity and chains to the cluster CA:
    // node 1 (from init) accepts it as replica 2, and only as replica 2.
    let node2 = Credentials::load(dir, Identity::Node(NodeId(2))).unwrap();
    let node1 = Credentials::load(dir, Identity::Node(NodeId(1))).unwrap();
    let until = certs::not_after(node2.cert()).unwrap();
    let in_30_days = std::time::SystemTime::now() + std::time::Duration::from_secs(30 * 86_400);
    assert!(until <= in_30_days && until > in_30_days - std::time::Duration::from_secs(60));
    use rustls::client::danger::ServerCertVerifier;
    let verify = |expect: u32| {
        let v = tls::NodeVerifier::new(&node1, Some(NodeId(expect)), tls::provider()).unwrap();
        let name = rustls::pki_types::ServerName::try_from("node-2.synod").unwrap();
        v.verify_server_cert(node2.cert(), &[], &name, &[], rustls::pki_types::UnixTime::now())
    };
    verify(2).expect("the added certificate verifies against the CA");
    assert!(verify(3).is_err());

    // A running pair: replica 1 from `init`, replica 2 from `add`.
    let sockets: Vec<std::net::UdpSocket> =
        (0..2).map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    let book = synod_transport::address_book(
        sockets.iter().enumerate().map(|(i, s)| (NodeId(i as u32 + 1), s.local_addr().unwrap())),
    );
    let mut events = Vec::new();
    let mut nodes = Vec::new();
    for (i, (socket, creds)) in sockets.into_iter().zip([node1, node2]).enumerate() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let config = NodeConfig {
            id: NodeId(i as u32 + 1),
            peers: book.clone(),
            credentials: creds,
            settings: crate::util::settings(),
        };
        nodes.push(Node::start_on(socket, config, move |e| drop(tx.send(e))).unwrap());
        events.push(crate::util::Events(rx));
    }
    events[0].peer_up(2);
    events[1].peer_up(1);

    // The CA key must stay private: a readable one is refused.
    std::fs::set_permissions(dir.join("ca.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = certs::add(dir, Identity::Client(2), 30, false).unwrap_err();
    assert!(matches!(err, CertError::KeyExposed { .. }), "{err}");
    assert!(!dir.join("client-2.pem").exists());
}

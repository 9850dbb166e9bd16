//! The test harness itself: a `redis-server` that fails to start is reported (its exit, not
//! only its port), and no two tests are handed one port.

mod common;

use std::collections::HashSet;
use std::net::TcpListener;

use common::{PortLease, RedisServer, StartError};

#[test]
fn a_lease_is_exclusive_until_dropped() {
    let lease = PortLease::new();
    let port = lease.port();
    assert!(
        PortLease::try_port(port).is_none(),
        "a leased port was leased twice"
    );
    drop(lease);
    assert!(PortLease::try_port(port).is_some());
}

#[test]
fn leases_taken_at_once_from_many_threads_are_distinct() {
    let leases: Vec<PortLease> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|_| s.spawn(|| (0..50).map(|_| PortLease::new()).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let ports: HashSet<u16> = leases.iter().map(PortLease::port).collect();
    assert_eq!(ports.len(), leases.len(), "a port was handed out twice");
}

#[test]
fn a_server_whose_port_is_taken_is_reported_as_exited() {
    if !RedisServer::available("a_server_whose_port_is_taken_is_reported_as_exited") {
        return;
    }
    // A listener outside the lease holds the port: the child cannot bind and exits. The port
    // accepts connections all the same, so a harness that only polled the port would take the
    // stranger for its server.
    let stranger = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = stranger.local_addr().unwrap().port();
    let lease = PortLease::try_port(port).expect("the stranger holds no lease");
    match RedisServer::start_on(lease, None) {
        Err(StartError::Exited(why)) => {
            assert!(why.contains(&port.to_string()), "{why}");
            assert!(why.contains("exit"), "{why}");
        }
        Err(other) => panic!("expected the child's exit to be seen, got {other:?}"),
        Ok(_) => panic!("a server that could not bind was taken as started"),
    }
}

#[test]
fn a_server_with_a_bad_option_is_reported_with_its_log() {
    if !RedisServer::available("a_server_with_a_bad_option_is_reported_with_its_log") {
        return;
    }
    let missing = std::env::temp_dir().join("clockcache-no-such-tls-dir");
    match RedisServer::start_on(PortLease::new(), Some(missing)) {
        Err(StartError::Exited(why)) => assert!(why.contains("exited with"), "{why}"),
        Err(other) => panic!("expected the child's exit, got {other:?}"),
        Ok(_) => panic!("a server with missing certificates was taken as started"),
    }
}

#[test]
fn servers_started_at_once_each_serve_their_own_port() {
    let servers: Vec<RedisServer> = std::thread::scope(|s| {
        let starts: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| RedisServer::start("servers_started_at_once_each_serve_their_own_port"))
            })
            .collect();
        starts
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect()
    });
    if servers.is_empty() {
        return;
    }
    let ports: HashSet<u16> = servers.iter().map(RedisServer::port).collect();
    assert_eq!(ports.len(), servers.len());
    // Each answers on its own port with its own data.
    for (i, server) in servers.iter().enumerate() {
        let mut conn = server.conn();
        redis::cmd("SET")
            .arg("who")
            .arg(i)
            .query::<()>(&mut conn)
            .unwrap();
    }
    for (i, server) in servers.iter().enumerate() {
        let mut conn = server.conn();
        let who: usize = redis::cmd("GET").arg("who").query(&mut conn).unwrap();
        assert_eq!(who, i);
    }
}

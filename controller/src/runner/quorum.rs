//! Whether a `pictl reset --nodes` of some HA servers leaves etcd a quorum:
//! etcd commits nothing (not even the removal of a member) without a
//! majority of its members, so a subset of servers whose reset leaves fewer
//! than a majority is refused before anything is touched. Pure: the caller
//! says which servers hold the cluster and which are to be reset.
//!
//! The members are counted from the inventory: every server of an HA
//! inventory holds the cluster but those whose facts show no K3s installed.
//! Servers outside the reset were not connected, so they count as members.

/// etcd's quorum: more than half of the members.
pub fn majority(members: usize) -> usize {
    members / 2 + 1
}

/// A reset that would leave etcd without a quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    /// The servers asked for, in inventory order.
    pub servers: Vec<String>,
    pub members: usize,
    pub remaining: usize,
}

impl Shortfall {
    pub fn need(&self) -> usize {
        majority(self.members)
    }

    /// How many servers one reset may take and keep a quorum.
    pub fn at_most(&self) -> usize {
        self.members - self.need()
    }
}

/// One inventory server as the reset sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// Not asked to be reset (or unreachable): a member as far as pictl knows.
    Kept,
    /// Asked to be reset and running K3s: a member that goes.
    Reset,
    /// Asked to be reset, reached, and without K3s: no member.
    Absent,
}

/// `servers`: each inventory server with its name. None when the reset
/// keeps a quorum or takes every member (the whole cluster goes).
pub fn check(servers: &[(&str, Server)]) -> Option<Shortfall> {
    let members = servers.iter().filter(|(_, s)| *s != Server::Absent).count();
    let going: Vec<String> = servers
        .iter()
        .filter(|(_, s)| *s == Server::Reset)
        .map(|(n, _)| n.to_string())
        .collect();
    let remaining = members - going.len();
    if going.is_empty() || remaining == 0 || remaining >= majority(members) {
        return None;
    }
    Some(Shortfall {
        servers: going,
        members,
        remaining,
    })
}

#[cfg(test)]
mod tests {
    use super::Server::{Absent, Kept, Reset};
    use super::*;

    #[test]
    fn two_of_three_servers_are_refused_with_the_numbers() {
        let s = check(&[("s1", Kept), ("s2", Reset), ("s3", Reset)]).expect("refused");
        assert_eq!(s.servers, ["s2", "s3"]);
        assert_eq!(
            (s.members, s.remaining, s.need(), s.at_most()),
            (3, 1, 2, 1)
        );
    }

    #[test]
    fn one_of_three_and_every_server_are_allowed() {
        assert_eq!(check(&[("s1", Kept), ("s2", Kept), ("s3", Reset)]), None);
        assert_eq!(check(&[("s1", Reset), ("s2", Reset), ("s3", Reset)]), None);
        assert_eq!(check(&[("s1", Kept), ("s2", Kept)]), None);
    }

    #[test]
    fn servers_without_k3s_are_not_members() {
        // s3 was reset before: two members, and one of them going leaves 1 of 2.
        let s = check(&[("s1", Kept), ("s2", Reset), ("s3", Absent)]).expect("refused");
        assert_eq!((s.members, s.remaining, s.need()), (2, 1, 2));
        // Two of five leave three: a majority.
        let five = [
            ("s1", Kept),
            ("s2", Kept),
            ("s3", Kept),
            ("s4", Reset),
            ("s5", Reset),
        ];
        assert_eq!(check(&five), None);
    }
}

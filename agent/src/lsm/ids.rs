//! The agent's own BPF maps and links, by kernel id, read from its file descriptors
//! (`/proc/self/fdinfo/N` shows `map_id:` for a map fd and `link_id:` for a link fd). Everything
//! the agent holds is protected this way, whichever module created it (sensor, responder,
//! isolation objects adopted from bpffs, the guard's own maps).

use std::collections::BTreeSet;

use agent_common::osprey_bpf_object as obj;

/// (kind, id): kind is `OSPREY_OBJ_MAP` or `OSPREY_OBJ_LINK`.
pub type ObjectId = (u32, u32);

/// The object one fdinfo text describes, if it is a BPF map or link.
pub fn parse_fdinfo(info: &str) -> Option<ObjectId> {
    info.lines().find_map(|l| {
        let (key, value) = l.split_once(':')?;
        let kind = match key.trim() {
            "map_id" => obj::OSPREY_OBJ_MAP,
            "link_id" => obj::OSPREY_OBJ_LINK,
            _ => return None,
        };
        value.trim().parse().ok().filter(|&id| id != 0).map(|id| (kind, id))
    })
}

/// Every map and link this process holds a descriptor of right now.
pub fn own_objects() -> BTreeSet<ObjectId> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fdinfo") else { return BTreeSet::new() };
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|info| parse_fdinfo(&info))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_map_and_link_ids_from_fdinfo() {
        let map = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1055\nmap_type:\t27\nkey_size:\t0\nmap_id:\t412\nfrozen:\t0\n";
        assert_eq!(parse_fdinfo(map), Some((obj::OSPREY_OBJ_MAP, 412)));
        let link = "pos:\t0\nflags:\t02000000\nlink_type:\tcgroup\nlink_id:\t77\nprog_tag:\tabc\nprog_id:\t901\n";
        assert_eq!(parse_fdinfo(link), Some((obj::OSPREY_OBJ_LINK, 77)));
        let prog = "pos:\t0\nprog_type:\t26\nprog_jited:\t1\nprog_tag:\tabc\nmemlock:\t4096\nprog_id:\t901\n";
        assert_eq!(parse_fdinfo(prog), None, "programs are not protected by id (no bpf() command changes one)");
        assert_eq!(parse_fdinfo("pos:\t0\nflags:\t02\nmnt_id:\t20\n"), None);
    }

    #[test]
    fn this_process_holds_no_bpf_object_unless_it_made_one() {
        // Plain unit test process: nothing loaded, nothing found, no panic on odd fds.
        assert!(own_objects().iter().all(|&(k, id)| (k == obj::OSPREY_OBJ_MAP || k == obj::OSPREY_OBJ_LINK) && id > 0));
    }
}

//! Who this process is in a data-parallel job, from the variables its launcher sets, as MindCV
//! users launch jobs:
//!
//! - **`mpirun`** (Open MPI): `OMPI_COMM_WORLD_RANK`, `OMPI_COMM_WORLD_SIZE`,
//!   `OMPI_COMM_WORLD_LOCAL_RANK`. MindCV's older README: `mpirun --allow-run-as-root -n 8
//!   python train.py --distribute ...`.
//! - **PMI launchers** (MPICH / Intel MPI `mpiexec`, Slurm): `PMI_RANK`, `PMI_SIZE`, and
//!   `MPI_LOCALRANKID` when the launcher sets it.
//! - **Ascend rank table** (MindSpore's `scripts/launch_dist.sh`): `RANK_TABLE_FILE` (the HCCL
//!   JSON rank table, format 1.0: `server_list[].device[]` with `device_id`, `device_ip`,
//!   `rank_id`), `RANK_ID`, `RANK_SIZE`, `DEVICE_ID`, one process per device. Under `mpirun`, a
//!   `RANK_TABLE_FILE` that is also set is read and checked against the MPI ranks (for HCCL's
//!   cluster-info initialisation).
//!
//! Every variable that is set is parsed and checked; an error names the variable and its value.
//! MindSpore's own `msrun` (dynamic cluster, `MS_ROLE`/`MS_WORKER_NUM`) is recognised and refused
//! with the `mpirun` command to use instead.
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The launcher that started this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// No launcher variables: a single process.
    None,
    /// Open MPI's `mpirun` / `mpiexec` (`OMPI_COMM_WORLD_*`).
    OpenMpi,
    /// A PMI launcher (`PMI_RANK`, `PMI_SIZE`).
    Pmi,
    /// An Ascend rank table (`RANK_TABLE_FILE`, `RANK_ID`, `RANK_SIZE`).
    RankTable,
}

impl Launcher {
    /// How messages name it: `mpirun`, `a PMI launcher`, `a rank table`, `no launcher`.
    pub fn describe(&self) -> &'static str {
        match self {
            Launcher::None => "no launcher",
            Launcher::OpenMpi => "mpirun (Open MPI)",
            Launcher::Pmi => "a PMI launcher (PMI_RANK/PMI_SIZE)",
            Launcher::RankTable => "a rank table (RANK_TABLE_FILE/RANK_ID/RANK_SIZE)",
        }
    }
}

/// This process's place in the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchInfo {
    /// Who started it.
    pub launcher: Launcher,
    /// Rank, `0..size` (0 without a launcher).
    pub rank: usize,
    /// Processes in the job (1 without a launcher).
    pub size: usize,
    /// Rank among the processes of this machine (`OMPI_COMM_WORLD_LOCAL_RANK`,
    /// `MPI_LOCALRANKID`, or the position in this server's device list of the rank table), when
    /// known.
    pub local_rank: Option<usize>,
    /// The accelerator this rank drives: `DEVICE_ID` when set, else the rank table's
    /// `device_id` for this rank, else the local rank under an MPI launcher.
    pub device_id: Option<u32>,
    /// The parsed `RANK_TABLE_FILE`, when set.
    pub rank_table: Option<RankTable>,
}

impl LaunchInfo {
    /// A process started without a launcher.
    pub fn single() -> LaunchInfo {
        LaunchInfo {
            launcher: Launcher::None,
            rank: 0,
            size: 1,
            local_rank: None,
            device_id: None,
            rank_table: None,
        }
    }
}

/// One device of a rank table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankTableDevice {
    /// Global rank (`rank_id`).
    pub rank_id: usize,
    /// Device number on its server (`device_id`).
    pub device_id: u32,
    /// The device's NIC address for HCCL (`device_ip`), when given.
    pub device_ip: Option<String>,
}

/// One server of a rank table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankTableServer {
    /// The server's address (`server_id`).
    pub server_id: String,
    /// Its devices, in file order.
    pub devices: Vec<RankTableDevice>,
}

/// An HCCL rank table (format 1.0, what MindSpore's `hccl_tools.py` writes):
/// `{"version": "1.0", "server_count": "1", "server_list": [{"server_id": "10.0.0.1",
/// "device": [{"device_id": "0", "device_ip": "192.168.100.101", "rank_id": "0"}, ...]}],
/// "status": "completed"}`. Numbers may be JSON strings (as HCCL writes them) or integers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankTable {
    /// The file it was read from.
    pub path: PathBuf,
    /// Servers, in file order.
    pub servers: Vec<RankTableServer>,
}

impl RankTable {
    /// Reads and validates a rank table file (see [`RankTable::parse`]).
    /// Errors: [`Error::Io`] naming the file, or the errors of [`RankTable::parse`].
    pub fn read(path: &Path) -> Result<RankTable> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        RankTable::parse(&text, path)
    }

    /// Parses and validates a rank table's JSON (`path` only names it in errors): `status`, when
    /// present, is `completed`; `server_list` is a non-empty list whose entries have a
    /// `server_id` and a non-empty `device` list; `server_count`, when present, equals the
    /// number of servers; every device has a `device_id` and a `rank_id`; the rank ids are
    /// exactly `0..devices`; device ids are unique within a server. The older format with
    /// `group_list` (version 0.1) is refused. Errors: [`Error::Format`] naming the file and the
    /// field.
    pub fn parse(text: &str, path: &Path) -> Result<RankTable> {
        use serde_json::Value;
        let bad = |msg: String| Error::format(path, format!("rank table: {msg}"));
        let v: Value =
            serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON ({e})")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| bad("the top level is not a JSON object".into()))?;
        if let Some(status) = obj.get("status") {
            if status.as_str() != Some("completed") {
                return Err(bad(format!("status is {status}, HCCL needs \"completed\"")));
            }
        }
        if obj.contains_key("group_list") && !obj.contains_key("server_list") {
            return Err(bad(
                "the version 0.1 format (group_list) is not supported: write the 1.0 format \
                 (server_list), e.g. with MindSpore's hccl_tools.py"
                    .into(),
            ));
        }
        let list = obj
            .get("server_list")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no server_list array".into()))?;
        if list.is_empty() {
            return Err(bad("server_list is empty".into()));
        }
        // A number given as a JSON string ("0") or integer (0).
        let number = |v: Option<&Value>, what: &str| -> Result<u64> {
            let v = v.ok_or_else(|| bad(format!("{what} is missing")))?;
            let n = match v {
                Value::String(s) => s.trim().parse::<u64>().ok(),
                Value::Number(n) => n.as_u64(),
                _ => None,
            };
            n.ok_or_else(|| bad(format!("{what} = {v} is not a non-negative integer")))
        };
        if obj.contains_key("server_count") {
            let count = number(obj.get("server_count"), "server_count")?;
            if count != list.len() as u64 {
                return Err(bad(format!(
                    "server_count is {count} but server_list has {} server(s)",
                    list.len()
                )));
            }
        }
        let mut servers = Vec::with_capacity(list.len());
        for (si, s) in list.iter().enumerate() {
            let at = format!("server_list[{si}]");
            let server_id = s
                .get("server_id")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("{at}.server_id is missing or not a string")))?
                .to_string();
            let devs = s
                .get("device")
                .and_then(Value::as_array)
                .ok_or_else(|| bad(format!("{at}.device is missing or not a list")))?;
            if devs.is_empty() {
                return Err(bad(format!("{at}.device is empty")));
            }
            let mut devices = Vec::with_capacity(devs.len());
            for (di, d) in devs.iter().enumerate() {
                let at = format!("{at}.device[{di}]");
                let device_id = number(d.get("device_id"), &format!("{at}.device_id"))?;
                let device_id = u32::try_from(device_id)
                    .map_err(|_| bad(format!("{at}.device_id = {device_id} is too large")))?;
                if devices
                    .iter()
                    .any(|x: &RankTableDevice| x.device_id == device_id)
                {
                    return Err(bad(format!(
                        "{at}.device_id {device_id} appears twice on server {server_id}"
                    )));
                }
                let rank_id = number(d.get("rank_id"), &format!("{at}.rank_id"))? as usize;
                let device_ip = d
                    .get("device_ip")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                devices.push(RankTableDevice {
                    rank_id,
                    device_id,
                    device_ip,
                });
            }
            if servers
                .iter()
                .any(|o: &RankTableServer| o.server_id == server_id)
            {
                return Err(bad(format!(
                    "{at}.server_id {server_id} appears twice: list each server once, with all \
                     its devices"
                )));
            }
            servers.push(RankTableServer { server_id, devices });
        }
        let n: usize = servers.iter().map(|s| s.devices.len()).sum();
        let mut seen = vec![false; n];
        for d in servers.iter().flat_map(|s| &s.devices) {
            if d.rank_id >= n || seen[d.rank_id] {
                return Err(bad(format!(
                    "rank_id {} is {} (the {n} devices need the rank ids 0..{n}, each once)",
                    d.rank_id,
                    if d.rank_id >= n {
                        "out of range"
                    } else {
                        "given twice"
                    }
                )));
            }
            seen[d.rank_id] = true;
        }
        Ok(RankTable {
            path: path.to_path_buf(),
            servers,
        })
    }

    /// Number of devices (ranks) in the table.
    pub fn size(&self) -> usize {
        self.servers.iter().map(|s| s.devices.len()).sum()
    }

    /// The server and device of `rank`, and the device's position on its server (its local
    /// rank). None if the table has no such rank.
    pub fn entry(&self, rank: usize) -> Option<(&RankTableServer, &RankTableDevice, usize)> {
        self.servers.iter().find_map(|s| {
            s.devices
                .iter()
                .position(|d| d.rank_id == rank)
                .map(|i| (s, &s.devices[i], i))
        })
    }
}

/// Reads this process's launch variables ([`detect_from`] on the environment).
pub fn detect() -> Result<LaunchInfo> {
    detect_from(|key| std::env::var(key).ok())
}

/// The launch information from the variables `var` gives (None = unset; empty values count
/// as unset). See the module docs for the variables and their precedence: Open MPI, then PMI,
/// then the rank table. Errors: [`Error::Config`] naming the variable for a value that is not
/// a number, a rank outside `0..size`, a size of 0, a variable set without its partner
/// (`OMPI_COMM_WORLD_RANK` without `OMPI_COMM_WORLD_SIZE`, `RANK_TABLE_FILE` without `RANK_ID`,
/// ...), `RANK_SIZE`/`RANK_ID` that disagree with the rank table or the MPI launcher, a
/// `DEVICE_ID` that is not this rank's device in the table, a launch by MindSpore's `msrun`;
/// rank table errors as [`RankTable::read`].
pub fn detect_from(var: impl Fn(&str) -> Option<String>) -> Result<LaunchInfo> {
    let get = |key: &str| var(key).filter(|v| !v.trim().is_empty());
    let num = |key: &str| -> Result<Option<usize>> {
        match get(key) {
            None => Ok(None),
            Some(v) => v.trim().parse::<usize>().map(Some).map_err(|_| {
                Error::Config(format!(
                    "{key}='{v}' is not a non-negative integer (set by the launcher)"
                ))
            }),
        }
    };
    let pair = |rank_key: &str, size_key: &str| -> Result<Option<(usize, usize)>> {
        match (num(rank_key)?, num(size_key)?) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(Error::Config(format!(
                "{rank_key} is set but {size_key} is not: start the processes with the launcher"
            ))),
            (None, Some(_)) => Err(Error::Config(format!(
                "{size_key} is set but {rank_key} is not: start the processes with the launcher"
            ))),
            (Some(r), Some(s)) => {
                if s == 0 {
                    return Err(Error::Config(format!(
                        "{size_key}=0: a job has >= 1 process"
                    )));
                }
                if r >= s {
                    return Err(Error::Config(format!(
                        "{rank_key}={r} is not below {size_key}={s}"
                    )));
                }
                Ok(Some((r, s)))
            }
        }
    };
    let device_env = match get("DEVICE_ID") {
        None => None,
        Some(v) => Some(
            v.trim()
                .parse::<u32>()
                .map_err(|_| Error::Config(format!("DEVICE_ID='{v}' is not a device number")))?,
        ),
    };
    let table = match get("RANK_TABLE_FILE") {
        Some(p) => Some(RankTable::read(Path::new(p.trim()))?),
        None => None,
    };
    let rank_id = num("RANK_ID")?;
    let rank_size = num("RANK_SIZE")?;

    let mpi = match pair("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE")? {
        Some((r, s)) => Some((Launcher::OpenMpi, r, s, num("OMPI_COMM_WORLD_LOCAL_RANK")?)),
        None => pair("PMI_RANK", "PMI_SIZE")?
            .map(|(r, s)| -> Result<_> { Ok((Launcher::Pmi, r, s, num("MPI_LOCALRANKID")?)) })
            .transpose()?,
    };
    if let Some((launcher, rank, size, local_rank)) = mpi {
        // RANK_ID / RANK_SIZE, when also set, must describe the same job.
        for (key, have, want) in [("RANK_ID", rank_id, rank), ("RANK_SIZE", rank_size, size)] {
            if let Some(h) = have {
                if h != want {
                    return Err(Error::Config(format!(
                        "{key}={h} but {} gives {want}: unset {key} or make it agree",
                        launcher.describe()
                    )));
                }
            }
        }
        let mut device_id = device_env.or(local_rank.and_then(|l| u32::try_from(l).ok()));
        if let Some(t) = &table {
            device_id = Some(table_device(t, rank, size, device_env)?.0);
        }
        return Ok(LaunchInfo {
            launcher,
            rank,
            size,
            local_rank,
            device_id,
            rank_table: table,
        });
    }
    if get("MS_ROLE").is_some() || get("MS_WORKER_NUM").is_some() {
        return Err(Error::Config(
            "this process was started by MindSpore's msrun (MS_ROLE / MS_WORKER_NUM are set): \
             senet does not speak MindSpore's dynamic-cluster protocol. Launch with mpirun \
             instead, e.g. `mpirun --allow-run-as-root -n 8 senet train -c RECIPE --distribute`"
                .into(),
        ));
    }
    match (table, rank_id, rank_size) {
        (None, None, None) => Ok(LaunchInfo {
            device_id: device_env,
            ..LaunchInfo::single()
        }),
        // Standalone Ascend scripts set RANK_SIZE=1 (and RANK_ID=0) without a table.
        (None, r, Some(1)) if r.unwrap_or(0) == 0 => Ok(LaunchInfo {
            device_id: device_env,
            ..LaunchInfo::single()
        }),
        (None, _, _) => Err(Error::Config(format!(
            "RANK_ID={} RANK_SIZE={} are set but RANK_TABLE_FILE is not: a rank-table launch \
             needs all three (or launch with mpirun)",
            rank_id.map_or("(unset)".to_string(), |v| v.to_string()),
            rank_size.map_or("(unset)".to_string(), |v| v.to_string())
        ))),
        (Some(t), r, s) => {
            let (Some(rank), Some(size)) = (r, s) else {
                return Err(Error::Config(format!(
                    "RANK_TABLE_FILE={} is set but {}: MindSpore's launch scripts set \
                     RANK_TABLE_FILE, RANK_SIZE, RANK_ID and DEVICE_ID for every process",
                    t.path.display(),
                    match (r, s) {
                        (None, None) => "RANK_ID and RANK_SIZE are not",
                        (None, _) => "RANK_ID is not",
                        _ => "RANK_SIZE is not",
                    }
                )));
            };
            if size == 0 {
                return Err(Error::Config("RANK_SIZE=0: a job has >= 1 process".into()));
            }
            if rank >= size {
                return Err(Error::Config(format!(
                    "RANK_ID={rank} is not below RANK_SIZE={size}"
                )));
            }
            let (device_id, local_rank) = table_device(&t, rank, size, device_env)?;
            Ok(LaunchInfo {
                launcher: Launcher::RankTable,
                rank,
                size,
                local_rank: Some(local_rank),
                device_id: Some(device_id),
                rank_table: Some(t),
            })
        }
    }
}

/// This rank's device and local rank in `table`, checked against the job size and `DEVICE_ID`.
fn table_device(
    table: &RankTable,
    rank: usize,
    size: usize,
    device_env: Option<u32>,
) -> Result<(u32, usize)> {
    if table.size() != size {
        return Err(Error::Config(format!(
            "the rank table {} lists {} device(s) but the job has {size} process(es) \
             (RANK_SIZE / the launcher's size)",
            table.path.display(),
            table.size()
        )));
    }
    let (server, dev, local) = table
        .entry(rank)
        .expect("a validated table of `size` devices has every rank below it");
    if let Some(d) = device_env {
        if d != dev.device_id {
            return Err(Error::Config(format!(
                "DEVICE_ID={d}, but the rank table {} gives rank {rank} device {} on server {}",
                table.path.display(),
                dev.device_id,
                server.server_id
            )));
        }
    }
    Ok((dev.device_id, local))
}

/// The default of `SENET_DIST_TIMEOUT`: 30 minutes.
pub const DEFAULT_COLLECTIVE_TIMEOUT: Duration = Duration::from_secs(1800);

/// How long one collective may wait for the other ranks before this process gives up
/// (`SENET_DIST_TIMEOUT`, seconds; default [`DEFAULT_COLLECTIVE_TIMEOUT`]; `0` = wait forever).
/// A dead rank is normally noticed sooner by `mpirun`, which ends the job; this bounds the wait
/// when a rank is alive but stuck. Errors: a value that is not a number of seconds, named.
/// Read by the MPI communicator alone (the `mpi` feature).
#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
pub fn timeout_from_env() -> Result<Option<Duration>> {
    parse_timeout(std::env::var("SENET_DIST_TIMEOUT").ok().as_deref())
}

/// The largest collective timeout accepted, in seconds (a week).
const MAX_COLLECTIVE_TIMEOUT_S: f64 = 604_800.0;

fn parse_timeout(v: Option<&str>) -> Result<Option<Duration>> {
    match v.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(Some(DEFAULT_COLLECTIVE_TIMEOUT)),
        Some(v) => match v.parse::<f64>() {
            Ok(0.0) => Ok(None),
            Ok(s) if (0.001..=MAX_COLLECTIVE_TIMEOUT_S).contains(&s) => {
                Ok(Some(Duration::from_secs_f64(s)))
            }
            _ => Err(Error::Config(format!(
                "SENET_DIST_TIMEOUT='{v}' must be 0 (no limit) or a number of seconds between \
                 0.001 and {MAX_COLLECTIVE_TIMEOUT_S}"
            ))),
        },
    }
}

/// Quotes a command-line word for a POSIX shell when it needs it.
fn shell_word(w: &str) -> String {
    let plain = !w.is_empty()
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// The `mpirun` command that runs `args` (this process's command line, `args[0]` the program)
/// as a data-parallel job of `n` processes: `mpirun --allow-run-as-root -n <n> <args>`, with
/// `--distribute` appended unless the command line already has a `--distribute` flag.
pub fn mpirun_command(args: &[String], n: usize) -> String {
    let mut words: Vec<String> = vec![
        "mpirun".into(),
        "--allow-run-as-root".into(),
        "-n".into(),
        n.to_string(),
    ];
    if args.is_empty() {
        words.extend(["senet", "train", "-c", "RECIPE.yaml"].map(String::from));
    } else {
        words.extend(args.iter().map(|a| shell_word(a)));
    }
    if !args.iter().any(|a| a.starts_with("--distribute")) {
        words.push("--distribute".into());
    }
    words.join(" ")
}

/// The error for `distribute: True` in a process no launcher started: what happened, the
/// `mpirun` command for 8 processes built from `args`, the rank-table alternative on Ascend and
/// `--distribute False` for one process.
pub fn not_launched_error(args: &[String]) -> Error {
    let mpi_note = if cfg!(feature = "mpi") {
        ""
    } else {
        " (this senet was built without MPI: build it with `cargo build --release --features mpi` \
         first)"
    };
    Error::Config(format!(
        "distribute: True, but no launcher started this process (none of OMPI_COMM_WORLD_RANK, \
         PMI_RANK, RANK_TABLE_FILE is set). Start one process per device with mpirun{mpi_note}, \
         e.g. 8:\n    {}\n(--allow-run-as-root is needed only as root; on Ascend, MindSpore's \
         rank-table launch sets RANK_TABLE_FILE, RANK_SIZE, RANK_ID and DEVICE_ID for each \
         process.) For a single process pass --distribute False, or set distribute: False in the \
         recipe; MindCV's recipes assume 8 devices x batch_size, so scale lr accordingly",
        mpirun_command(args, 8)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn no_variables_is_a_single_process() {
        assert_eq!(detect_from(env(&[])).unwrap(), LaunchInfo::single());
        let i = detect_from(env(&[("RANK_SIZE", "1"), ("DEVICE_ID", "3")])).unwrap();
        assert_eq!(
            (i.launcher, i.size, i.device_id),
            (Launcher::None, 1, Some(3))
        );
    }

    #[test]
    fn open_mpi_and_pmi() {
        let i = detect_from(env(&[
            ("OMPI_COMM_WORLD_RANK", "1"),
            ("OMPI_COMM_WORLD_SIZE", "2"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
        ]))
        .unwrap();
        assert_eq!(
            (i.launcher, i.rank, i.size, i.local_rank, i.device_id),
            (Launcher::OpenMpi, 1, 2, Some(1), Some(1))
        );
        let i = detect_from(env(&[("PMI_RANK", "3"), ("PMI_SIZE", "4")])).unwrap();
        assert_eq!((i.launcher, i.rank, i.size), (Launcher::Pmi, 3, 4));
        let e = detect_from(env(&[("OMPI_COMM_WORLD_RANK", "0")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("OMPI_COMM_WORLD_SIZE is not"), "{e}");
        let e = detect_from(env(&[("PMI_RANK", "x"), ("PMI_SIZE", "2")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("PMI_RANK='x'"), "{e}");
        let e = detect_from(env(&[("PMI_RANK", "2"), ("PMI_SIZE", "2")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("PMI_RANK=2 is not below PMI_SIZE=2"), "{e}");
        let e = detect_from(env(&[
            ("OMPI_COMM_WORLD_RANK", "0"),
            ("OMPI_COMM_WORLD_SIZE", "2"),
            ("RANK_SIZE", "8"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("RANK_SIZE=8"), "{e}");
        let e = detect_from(env(&[("MS_ROLE", "MS_WORKER")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("msrun") && e.contains("mpirun"), "{e}");
    }

    const TABLE: &str = r#"{
        "version": "1.0", "server_count": "1",
        "server_list": [{"server_id": "10.0.0.1", "host_nic_ip": "reserve", "device": [
            {"device_id": "0", "device_ip": "192.168.100.101", "rank_id": "0"},
            {"device_id": "1", "device_ip": "192.168.101.101", "rank_id": "1"}]}],
        "status": "completed"}"#;

    #[test]
    fn rank_tables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rank_table_2pcs.json");
        std::fs::write(&path, TABLE).unwrap();
        let p = path.to_str().unwrap();
        let i = detect_from(env(&[
            ("RANK_TABLE_FILE", p),
            ("RANK_ID", "1"),
            ("RANK_SIZE", "2"),
            ("DEVICE_ID", "1"),
        ]))
        .unwrap();
        assert_eq!(
            (i.launcher, i.rank, i.size, i.local_rank, i.device_id),
            (Launcher::RankTable, 1, 2, Some(1), Some(1))
        );
        let t = i.rank_table.unwrap();
        assert_eq!(t.size(), 2);
        assert_eq!(
            t.servers[0].devices[1].device_ip.as_deref(),
            Some("192.168.101.101")
        );
        let e = detect_from(env(&[
            ("RANK_TABLE_FILE", p),
            ("RANK_ID", "1"),
            ("RANK_SIZE", "2"),
            ("DEVICE_ID", "0"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("DEVICE_ID=0") && e.contains("device 1"), "{e}");
        let e = detect_from(env(&[
            ("RANK_TABLE_FILE", p),
            ("RANK_ID", "0"),
            ("RANK_SIZE", "8"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("lists 2 device(s)"), "{e}");
        let e = detect_from(env(&[("RANK_TABLE_FILE", p), ("RANK_SIZE", "2")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("RANK_ID is not"), "{e}");
        let e = detect_from(env(&[("RANK_ID", "0"), ("RANK_SIZE", "2")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("RANK_TABLE_FILE is not"), "{e}");
        let missing = dir.path().join("nope.json");
        let e = detect_from(env(&[
            ("RANK_TABLE_FILE", missing.to_str().unwrap()),
            ("RANK_ID", "0"),
            ("RANK_SIZE", "2"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("nope.json"), "{e}");
    }

    #[test]
    fn rank_table_validation_names_the_field() {
        let p = Path::new("t.json");
        let err = |text: &str| RankTable::parse(text, p).unwrap_err().to_string();
        assert!(err("[").contains("not valid JSON"));
        assert!(err(r#"{"status": "initializing", "server_list": []}"#).contains("completed"));
        assert!(err(r#"{"group_list": []}"#).contains("0.1"));
        assert!(err(r#"{"server_list": []}"#).contains("empty"));
        let dup = TABLE.replace(r#""rank_id": "1""#, r#""rank_id": "0""#);
        assert!(err(&dup).contains("given twice"), "{}", err(&dup));
        let dev = TABLE.replace(r#""device_id": "1""#, r#""device_id": "0""#);
        assert!(err(&dev).contains("appears twice"));
        let count = TABLE.replace(r#""server_count": "1""#, r#""server_count": "2""#);
        assert!(err(&count).contains("server_count is 2"));
        // One server listed twice would put two ranks on one device.
        let twice = r#"{"version": "1.0", "status": "completed", "server_list": [
            {"server_id": "a", "device": [{"device_id": "0", "rank_id": "0"}]},
            {"server_id": "a", "device": [{"device_id": "0", "rank_id": "1"}]}]}"#;
        assert!(
            err(twice).contains("server_id a appears twice"),
            "{}",
            err(twice)
        );
        let nan = TABLE.replace(r#""device_id": "1""#, r#""device_id": "one""#);
        assert!(err(&nan).contains("server_list[0].device[1].device_id"));
        // Integers instead of strings are fine.
        let ints = TABLE.replace(r#""rank_id": "1""#, r#""rank_id": 1"#);
        assert_eq!(RankTable::parse(&ints, p).unwrap().size(), 2);
    }

    #[test]
    fn mpirun_commands_and_messages() {
        let args: Vec<String> = ["target/release/senet", "train", "-c", "my recipe.yaml"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            mpirun_command(&args, 8),
            "mpirun --allow-run-as-root -n 8 target/release/senet train -c 'my recipe.yaml' \
             --distribute"
        );
        let mut with = args.clone();
        with.push("--distribute".into());
        assert!(!mpirun_command(&with, 2).ends_with("--distribute --distribute"));
        let e = not_launched_error(&args).to_string();
        assert!(
            e.contains("mpirun --allow-run-as-root -n 8 target/release/senet"),
            "{e}"
        );
        assert!(e.contains("--distribute False"), "{e}");
    }

    #[test]
    fn timeouts() {
        assert_eq!(
            parse_timeout(None).unwrap(),
            Some(DEFAULT_COLLECTIVE_TIMEOUT)
        );
        assert_eq!(parse_timeout(Some("0")).unwrap(), None);
        assert_eq!(
            parse_timeout(Some("2.5")).unwrap(),
            Some(Duration::from_millis(2500))
        );
        assert!(parse_timeout(Some("soon"))
            .unwrap_err()
            .to_string()
            .contains("SENET_DIST_TIMEOUT='soon'"));
        // Out of range: an error naming the variable, never a panic in Duration.
        for v in ["1e300", "1e-12", "-3", "inf", "NaN"] {
            assert!(parse_timeout(Some(v))
                .unwrap_err()
                .to_string()
                .contains("SENET_DIST_TIMEOUT"));
        }
    }
}

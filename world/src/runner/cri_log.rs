//! A container's log in the kubelet's format, for `kubectl logs` through kwok.
//!
//! kwok's kubelet server reads a container's log file with the kubelet's own reader, which only
//! understands the CRI log format (`<RFC 3339 time> <stream> <F|P> <text>` per line; plain lines
//! are skipped as unparsable). The supervisor writes what the process prints, unchanged
//! (`current.log` and the run before it as `previous.log`), and the tests read those files as
//! they are. So a [`Mirror`] follows the supervisor's files and keeps a CRI copy of each beside
//! them: the time is when the mirror read the line (at most a poll interval late), the stream is
//! always `stdout` (the process's stdout and stderr share one file), and a new run of the
//! container (the supervisor renamed `current.log`) turns the copy of the finished run into the
//! copy's `previous.log`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;

use crate::supervisor::log_path;

/// How often the mirror looks for new output.
const POLL: Duration = Duration::from_millis(250);

/// A line longer than this is cut into partial (`P`) entries, as container runtimes do.
const MAX_LINE: usize = 16 * 1024;

/// One CRI log entry: `time stream tag content\n`.
pub fn cri_line(time: SystemTime, partial: bool, content: &[u8]) -> Vec<u8> {
    let stamp = chrono::DateTime::<chrono::Utc>::from(time)
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let mut line = format!("{stamp} stdout {} ", if partial { 'P' } else { 'F' }).into_bytes();
    line.extend_from_slice(content);
    line.push(b'\n');
    line
}

/// The whole of `text` as CRI entries stamped `time` (a last line without a newline included).
pub fn convert(text: &[u8], time: SystemTime) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pending = Vec::new();
    emit_lines(&mut pending, text, time, &mut out);
    flush(&mut pending, time, &mut out);
    out
}

/// Appends `new` to `pending` and moves every complete line (and over-long partial ones) to `out`.
fn emit_lines(pending: &mut Vec<u8>, new: &[u8], time: SystemTime, out: &mut Vec<u8>) {
    pending.extend_from_slice(new);
    let mut start = 0;
    while let Some(pos) = pending[start..].iter().position(|b| *b == b'\n') {
        out.extend(cri_line(time, false, &pending[start..start + pos]));
        start += pos + 1;
    }
    while pending.len() - start >= MAX_LINE {
        out.extend(cri_line(time, true, &pending[start..start + MAX_LINE]));
        start += MAX_LINE;
    }
    pending.drain(..start);
}

/// A run's last line, even without its newline.
fn flush(pending: &mut Vec<u8>, time: SystemTime, out: &mut Vec<u8>) {
    if !pending.is_empty() {
        out.extend(cri_line(time, false, pending));
        pending.clear();
    }
}

/// Follows one container's supervisor log directory into a CRI copy (synchronous, one step per
/// poll; tests drive it directly).
pub struct Follower {
    source: PathBuf,
    out: PathBuf,
    /// The supervisor's `current.log` being read (it stays readable after the rename) and its inode.
    reader: Option<(File, u64)>,
    pending: Vec<u8>,
    /// The copy of the run being read.
    writer: Option<File>,
}

impl Follower {
    /// Starts from what is there: the copy is rebuilt from the supervisor's files, so a runner
    /// that restarted keeps serving the previous run's log.
    pub fn new(source: PathBuf, out: PathBuf) -> io::Result<Follower> {
        fs::create_dir_all(&out)?;
        match fs::read(log_path(&source, true)) {
            Ok(text) => {
                let time = modified(&log_path(&source, true));
                fs::write(log_path(&out, true), convert(&text, time))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                remove_if_present(&log_path(&out, true))?;
            }
            Err(e) => return Err(e),
        }
        let writer = File::create(log_path(&out, false))?;
        Ok(Follower {
            source,
            out,
            reader: None,
            pending: Vec::new(),
            writer: Some(writer),
        })
    }

    /// The CRI copy of the current (or previous) run, for kwok's `Logs`.
    pub fn path(&self, previous: bool) -> PathBuf {
        log_path(&self.out, previous)
    }

    /// Copies what was written since the last step; on a new run, finishes the old one's copy
    /// and makes it the previous one.
    pub fn step(&mut self, now: SystemTime) -> io::Result<()> {
        if self.reader.is_none() {
            self.reader = open_with_inode(&log_path(&self.source, false))?;
        }
        self.drain(now)?;
        let Some((_, inode)) = &self.reader else {
            return Ok(());
        };
        let latest = open_with_inode(&log_path(&self.source, false))?;
        match latest {
            Some((file, new_inode)) if new_inode != *inode => {
                // A new run: the old file may still have had a last write after the drain above.
                self.drain(now)?;
                let mut tail = Vec::new();
                flush(&mut self.pending, now, &mut tail);
                self.write(&tail)?;
                fs::rename(log_path(&self.out, false), log_path(&self.out, true))?;
                self.writer = Some(File::create(log_path(&self.out, false))?);
                self.reader = Some((file, new_inode));
                self.drain(now)
            }
            _ => Ok(()),
        }
    }

    fn drain(&mut self, now: SystemTime) -> io::Result<()> {
        let Some((file, _)) = &mut self.reader else {
            return Ok(());
        };
        let mut new = Vec::new();
        file.read_to_end(&mut new)?;
        if new.is_empty() {
            return Ok(());
        }
        let mut out = Vec::new();
        emit_lines(&mut self.pending, &new, now, &mut out);
        self.write(&out)
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.writer.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(log_path(&self.out, false))?;
            self.writer = Some(file);
        }
        match &mut self.writer {
            Some(w) => w.write_all(bytes),
            None => Ok(()),
        }
    }
}

fn open_with_inode(path: &Path) -> io::Result<Option<(File, u64)>> {
    match File::open(path) {
        Ok(file) => {
            let inode = file.metadata()?.ino();
            Ok(Some((file, inode)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn modified(path: &Path) -> SystemTime {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| SystemTime::now())
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A [`Follower`] polled on the runtime until dropped (with its pod task).
pub struct Mirror {
    current: PathBuf,
    previous: PathBuf,
    follower: Arc<Mutex<Follower>>,
    task: JoinHandle<()>,
}

impl Mirror {
    /// Mirrors the supervisor's log directory `source` into `out`; a failure is logged and the
    /// mirror keeps trying (a full disk must not take the pod down).
    pub fn start(source: PathBuf, out: PathBuf, what: String) -> io::Result<Mirror> {
        let follower = Follower::new(source, out)?;
        let (current, previous) = (follower.path(false), follower.path(true));
        let follower = Arc::new(Mutex::new(follower));
        let polled = follower.clone();
        let task = tokio::spawn(async move {
            let mut failing = false;
            loop {
                // Small reads of local files: not worth a blocking thread per poll.
                match step(&polled) {
                    Ok(()) => failing = false,
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(container = %what, error = %e, "log mirror failed; retrying");
                    }
                    Err(_) => {}
                }
                tokio::time::sleep(POLL).await;
            }
        });
        Ok(Mirror {
            current,
            previous,
            follower,
            task,
        })
    }

    /// Catches up at once. The runner calls it before it reports a container's status, so a
    /// restart shown in the pod's status already has its `previous.log` (as with a kubelet);
    /// an error is left to the polling task to report.
    pub fn sync(&self) {
        let _ = step(&self.follower);
    }

    pub fn path(&self, previous: bool) -> &Path {
        if previous {
            &self.previous
        } else {
            &self.current
        }
    }
}

fn step(follower: &Mutex<Follower>) -> io::Result<()> {
    // A panic while stepping leaves nothing half-done that a later step cannot mend.
    let mut f = follower.lock().unwrap_or_else(|e| e.into_inner());
    f.step(SystemTime::now())
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn append(path: &Path, text: &str) {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn lines_become_cri_entries() {
        assert_eq!(
            String::from_utf8(convert(b"one\ntwo", at(1))).unwrap(),
            "1970-01-01T00:00:01.000000000Z stdout F one\n\
             1970-01-01T00:00:01.000000000Z stdout F two\n"
        );
        let long = vec![b'x'; MAX_LINE + 3];
        let out = String::from_utf8(convert(&long, at(0))).unwrap();
        let tags: Vec<&str> = out.lines().map(|l| l.split(' ').nth(2).unwrap()).collect();
        assert_eq!(tags, ["P", "F"]);
    }

    #[test]
    fn follows_runs_and_keeps_the_previous_one() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, out) = (tmp.path().join("src"), tmp.path().join("out"));
        fs::create_dir_all(&src).unwrap();
        let mut f = Follower::new(src.clone(), out.clone()).unwrap();
        f.step(at(1)).unwrap();
        assert_eq!(fs::read_to_string(f.path(false)).unwrap(), "");

        append(&log_path(&src, false), "first run\npart");
        f.step(at(2)).unwrap();
        assert_eq!(
            fs::read_to_string(f.path(false)).unwrap(),
            "1970-01-01T00:00:02.000000000Z stdout F first run\n"
        );
        // The supervisor starts a new run: renames current.log and opens a fresh one.
        append(&log_path(&src, false), "ial");
        fs::rename(log_path(&src, false), log_path(&src, true)).unwrap();
        append(&log_path(&src, false), "second run\n");
        f.step(at(3)).unwrap();
        assert_eq!(
            fs::read_to_string(f.path(true)).unwrap(),
            "1970-01-01T00:00:02.000000000Z stdout F first run\n\
             1970-01-01T00:00:03.000000000Z stdout F partial\n"
        );
        assert_eq!(
            fs::read_to_string(f.path(false)).unwrap(),
            "1970-01-01T00:00:03.000000000Z stdout F second run\n"
        );

        // A new follower (the runner restarted) rebuilds the previous run's copy.
        let again = Follower::new(src, out).unwrap();
        assert!(
            fs::read_to_string(again.path(true))
                .unwrap()
                .ends_with("stdout F partial\n")
        );
    }
}

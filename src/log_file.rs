//! The log file (`log_file`, `-l`), reopened on SIGUSR1 (`junction --signal
//! reopen`), as nats-server does, so logrotate can move it away and have the
//! broker write a new one (its `postrotate` sends the signal).

use parking_lot::{Mutex, MutexGuard};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The open log file and where it lives.
pub struct LogFile {
    path: PathBuf,
    file: Mutex<File>,
}

/// The process's log file, once logging to one has started.
static OPEN: OnceLock<Arc<LogFile>> = OnceLock::new();

fn open(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

impl LogFile {
    /// Opens `path` for appending and makes it the file [`reopen`] reopens.
    pub fn start(path: &Path) -> Result<LogWriter, String> {
        let file =
            open(path).map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
        let log = Arc::new(LogFile {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        });
        let _ = OPEN.set(log.clone());
        Ok(LogWriter(log))
    }
}

/// Reopens the log file at its path (a new file if it was moved away); the
/// old one stays open until then. Nothing when logs go to stderr.
pub fn reopen() -> Result<(), String> {
    let Some(log) = OPEN.get() else {
        return Ok(());
    };
    let fresh = open(&log.path)
        .map_err(|e| format!("cannot reopen log file {}: {e}", log.path.display()))?;
    let mut file = log.file.lock();
    let _ = file.flush();
    *file = fresh;
    Ok(())
}

/// What `tracing_subscriber` writes through.
#[derive(Clone)]
pub struct LogWriter(Arc<LogFile>);

/// One log line's hold on the file.
pub struct LogLine<'a>(MutexGuard<'a, File>);

impl Write for LogLine<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine<'a>;
    fn make_writer(&'a self) -> Self::Writer {
        LogLine(self.0.file.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt::MakeWriter;

    #[test]
    fn a_moved_log_file_is_written_anew_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junction.log");
        let writer = LogFile::start(&path).unwrap();
        writer.make_writer().write_all(b"before\n").unwrap();
        std::fs::rename(&path, dir.path().join("junction.log.1")).unwrap();
        writer.make_writer().write_all(b"still old\n").unwrap();
        reopen().unwrap();
        writer.make_writer().write_all(b"after\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("junction.log.1")).unwrap(),
            "before\nstill old\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
    }
}

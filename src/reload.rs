//! Values derived from files that may change while the service runs
//! (tokens files, JWT keys, TLS certificates): the files are read again at
//! most once per interval, when the value is next used, and a change
//! re-derives it. A change that fails to load keeps the previous value and
//! is logged once.
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Derives a value from the contents of its files, in the order given.
pub type Loader<T> = Box<dyn Fn(&[Vec<u8>]) -> Result<T, String> + Send + Sync>;

/// A value kept in step with a set of files.
pub struct Reloading<T> {
    paths: Vec<PathBuf>,
    interval: Duration,
    load: Loader<T>,
    state: Mutex<State<T>>,
}

struct State<T> {
    checked: Instant,
    contents: Vec<Vec<u8>>,
    value: Arc<T>,
}

impl<T> Reloading<T> {
    /// Reads the files and derives the first value; an error names the file
    /// that could not be read or the reason the contents were refused.
    pub fn new(paths: Vec<PathBuf>, interval: Duration, load: Loader<T>) -> Result<Self, String> {
        let contents = read_all(&paths)?;
        let value = Arc::new(load(&contents)?);
        Ok(Reloading {
            paths,
            interval,
            load,
            state: Mutex::new(State {
                checked: Instant::now(),
                contents,
                value,
            }),
        })
    }

    /// The value for the files as they are now (read again when the
    /// interval has passed since the last look).
    pub fn current(&self) -> Arc<T> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.paths.is_empty() || state.checked.elapsed() < self.interval {
            return Arc::clone(&state.value);
        }
        state.checked = Instant::now();
        let contents = match read_all(&self.paths) {
            Ok(contents) => contents,
            Err(reason) => {
                tracing::error!("keeping the loaded version: {reason}");
                return Arc::clone(&state.value);
            }
        };
        if contents != state.contents {
            match (self.load)(&contents) {
                Ok(value) => {
                    tracing::info!(files = ?self.paths, "reloaded");
                    state.value = Arc::new(value);
                }
                Err(reason) => {
                    tracing::error!(files = ?self.paths, "keeping the loaded version: {reason}")
                }
            }
            // Refused contents are not retried until they change again.
            state.contents = contents;
        }
        Arc::clone(&state.value)
    }
}

fn read_all(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>, String> {
    paths
        .iter()
        .map(|p| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_seen_and_a_bad_change_keeps_the_last_good_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n");
        std::fs::write(&path, "1").unwrap();
        let parse: Loader<u32> = Box::new(|files| {
            std::str::from_utf8(&files[0])
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .ok_or_else(|| "not a number".to_string())
        });
        let n = Reloading::new(vec![path.clone()], Duration::ZERO, parse).unwrap();
        assert_eq!(*n.current(), 1);
        std::fs::write(&path, "2").unwrap();
        assert_eq!(*n.current(), 2);
        std::fs::write(&path, "two").unwrap();
        assert_eq!(*n.current(), 2, "refused contents keep the last value");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(*n.current(), 2, "a missing file keeps the last value");
        std::fs::write(&path, "3").unwrap();
        assert_eq!(*n.current(), 3);
    }

    #[test]
    fn within_the_interval_the_files_are_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n");
        std::fs::write(&path, "a").unwrap();
        let len: Loader<usize> = Box::new(|files| Ok(files[0].len()));
        let n = Reloading::new(vec![path.clone()], Duration::from_secs(3600), len).unwrap();
        std::fs::write(&path, "abc").unwrap();
        assert_eq!(*n.current(), 1);
    }
}

//! Who may act. Machines (Alertmanager, scripts) use bearer tokens: the read token lists, the
//! write token acts. People sign in to the action center with a name and password from the users
//! file (TOML, argon2id hashes in PHC format), and act according to their role: a viewer sees,
//! an approver also approves, rejects, kills and edits caps, an admin also changes the mode.
//! Failed logins of one user in a row lock that user out for a while.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{ActionEngine, lock};

/// Who may do what through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Constant-time comparison, so a token cannot be guessed byte by byte from timings.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl ActionEngine {
    /// The actor a bearer token stands for, if it grants `need`.
    pub fn check_token(
        &self,
        bearer: Option<&str>,
        need: Access,
    ) -> Result<&'static str, &'static str> {
        let Some(t) = bearer else {
            return Err("unauthenticated");
        };
        if self
            .write_token
            .as_ref()
            .is_some_and(|w| same(w.expose(), t))
        {
            return Ok("write_token");
        }
        if self
            .read_token
            .as_ref()
            .is_some_and(|r| same(r.expose(), t))
        {
            return match need {
                Access::Read => Ok("read_token"),
                Access::Write => Err("forbidden"),
            };
        }
        Err("unauthenticated")
    }
}

/// A person's role in the action center, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Sees every page, changes nothing.
    Viewer,
    /// Also approves and rejects recommendations, uses the kill switch, edits caps and applies
    /// the reallocation.
    Approver,
    /// Also changes the mode and dry run.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = UsersError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "approver" => Ok(Role::Approver),
            "admin" => Ok(Role::Admin),
            other => Err(UsersError::Invalid(format!(
                "role must be viewer, approver or admin, not {other:?}"
            ))),
        }
    }
}

/// One entry of the users file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Sign-in name (letters, digits, `.`, `_`, `-`).
    pub name: String,
    pub role: Role,
    /// argon2id hash in PHC string format.
    pub password_hash: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default, rename = "user")]
    users: Vec<User>,
}

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("cannot read or write the users file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("users file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error("no user {0:?}")]
    NoSuchUser(String),
    #[error("user {0:?} already exists (use `adpulse user passwd`)")]
    Exists(String),
}

/// Why a sign-in failed. The page shows the same words for a wrong name and a wrong password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("wrong name or password")]
    Wrong,
    #[error("too many failed attempts: try again in {0} minutes")]
    Locked(u64),
    #[error("the users file cannot be read; see the log")]
    Unavailable,
}

/// Hash a password with argon2id and a random salt.
pub fn hash_password(password: &str) -> Result<String, UsersError> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| UsersError::Invalid(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UsersError::Invalid(format!("cannot hash the password: {e}")))
}

fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

fn valid_name(name: &str) -> Result<(), UsersError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(UsersError::Invalid(format!(
            "user name {name:?} must be 1-64 letters, digits, '.', '_' or '-'"
        )));
    }
    Ok(())
}

/// The users file, read at each sign-in (so `adpulse user` changes apply without a restart),
/// and the failed-login counts.
pub struct Users {
    path: PathBuf,
    max_failures: u32,
    lockout: Duration,
    /// name -> (failures in a row, locked until)
    failures: std::sync::Mutex<HashMap<String, (u32, Option<Instant>)>>,
}

impl Users {
    pub fn new(path: &Path, max_failures: u32, lockout: Duration) -> Self {
        Users {
            path: path.to_path_buf(),
            max_failures: max_failures.max(1),
            lockout,
            failures: std::sync::Mutex::new(HashMap::new()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(path: &Path) -> Result<Vec<User>, UsersError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(UsersError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let f: UsersFile = toml::from_str(&text).map_err(|e| UsersError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(f.users)
    }

    fn write(path: &Path, users: Vec<User>) -> Result<(), UsersError> {
        let io = |source| UsersError::Io {
            path: path.to_path_buf(),
            source,
        };
        let text = toml::to_string(&UsersFile { users })
            .map_err(|e| UsersError::Invalid(e.to_string()))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("toml.tmp");
        {
            use std::io::Write;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                // password hashes: readable by the service's user only
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp).map_err(io)?;
            f.write_all(
                b"# adpulse action center users: edit with `adpulse user add|passwd|remove`\n",
            )
            .map_err(io)?;
            f.write_all(text.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Every user (for `adpulse user list` and tests).
    pub fn list(&self) -> Result<Vec<User>, UsersError> {
        Self::read(&self.path)
    }

    pub fn add(&self, name: &str, role: Role, password: &str) -> Result<(), UsersError> {
        valid_name(name)?;
        check_password(password)?;
        let mut users = Self::read(&self.path)?;
        if users.iter().any(|u| u.name == name) {
            return Err(UsersError::Exists(name.into()));
        }
        users.push(User {
            name: name.into(),
            role,
            password_hash: hash_password(password)?,
        });
        Self::write(&self.path, users)
    }

    /// Set a new password (and, if given, a new role).
    pub fn passwd(&self, name: &str, password: &str, role: Option<Role>) -> Result<(), UsersError> {
        check_password(password)?;
        let mut users = Self::read(&self.path)?;
        let u = users
            .iter_mut()
            .find(|u| u.name == name)
            .ok_or_else(|| UsersError::NoSuchUser(name.into()))?;
        u.password_hash = hash_password(password)?;
        if let Some(r) = role {
            u.role = r;
        }
        Self::write(&self.path, users)?;
        lock(&self.failures).remove(name);
        Ok(())
    }

    pub fn remove(&self, name: &str) -> Result<(), UsersError> {
        let mut users = Self::read(&self.path)?;
        let n = users.len();
        users.retain(|u| u.name != name);
        if users.len() == n {
            return Err(UsersError::NoSuchUser(name.into()));
        }
        Self::write(&self.path, users)
    }

    /// The user's current role, if they still exist (a session re-checks it on every request,
    /// so a removed user or a lowered role takes effect at once).
    pub fn role_of(&self, name: &str) -> Option<Role> {
        Self::read(&self.path)
            .ok()?
            .into_iter()
            .find(|u| u.name == name)
            .map(|u| u.role)
    }

    /// Check a sign-in. CPU-heavy (argon2): call it from a blocking thread.
    pub fn verify(&self, name: &str, password: &str) -> Result<User, LoginError> {
        let now = Instant::now();
        if let Some((_, Some(until))) = lock(&self.failures).get(name)
            && *until > now
        {
            return Err(LoginError::Locked((*until - now).as_secs().div_ceil(60)));
        }
        let users = Self::read(&self.path).map_err(|error| {
            tracing::error!(%error, "users file unreadable");
            LoginError::Unavailable
        })?;
        let found = users.into_iter().find(|u| u.name == name);
        // verify against a real hash even for an unknown name, so timing does not tell names
        let ok = match &found {
            Some(u) => verify_password(&u.password_hash, password),
            None => {
                let _ = verify_password(DUMMY_HASH, password);
                false
            }
        };
        let mut f = lock(&self.failures);
        match (ok, found) {
            (true, Some(u)) => {
                f.remove(name);
                Ok(u)
            }
            _ => {
                // count unknown names too (bounded: the map is cleared when it grows large)
                if f.len() > 10_000 {
                    f.clear();
                }
                let e = f.entry(name.to_string()).or_insert((0, None));
                e.0 += 1;
                if e.0 >= self.max_failures {
                    e.1 = Some(now + self.lockout);
                    e.0 = 0;
                    tracing::warn!(user = ?name, "user locked out after failed sign-ins");
                }
                Err(LoginError::Wrong)
            }
        }
    }
}

/// argon2id hash of a random string, verified against when the name is unknown.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Xx0l2v0mJ1oSg3bGm7oWZzYl7W1x4kq6hJxZ0o2fE8Q";

fn check_password(password: &str) -> Result<(), UsersError> {
    if password.chars().count() < 10 {
        return Err(UsersError::Invalid(
            "the password must have at least 10 characters".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_file_add_verify_lockout_passwd_remove() {
        let (_dir, path) = crate::persist::temp_path("users.toml");
        let users = Users::new(&path, 3, Duration::from_secs(600));
        users.add("asha", Role::Approver, "correct horse").unwrap();
        assert!(matches!(
            users.add("asha", Role::Admin, "another one!"),
            Err(UsersError::Exists(_))
        ));
        assert!(matches!(
            users.add("bad name\n", Role::Admin, "long enough pw"),
            Err(UsersError::Invalid(_))
        ));
        assert!(matches!(
            users.add("short", Role::Admin, "short"),
            Err(UsersError::Invalid(_))
        ));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("$argon2id$"), "{text}");
        assert!(!text.contains("correct horse"));
        assert_eq!(
            users.verify("asha", "correct horse").map(|u| u.role),
            Ok(Role::Approver)
        );
        assert_eq!(users.verify("asha", "wrong"), Err(LoginError::Wrong));
        assert_eq!(users.verify("nobody", "x"), Err(LoginError::Wrong));
        assert_eq!(users.verify("asha", "wrong"), Err(LoginError::Wrong));
        assert_eq!(users.verify("asha", "wrong"), Err(LoginError::Wrong));
        // three failures in a row: locked, even with the right password
        assert_eq!(
            users.verify("asha", "correct horse"),
            Err(LoginError::Locked(10))
        );
        users
            .passwd("asha", "new password", Some(Role::Admin))
            .unwrap();
        assert_eq!(
            users.verify("asha", "new password").map(|u| u.role),
            Ok(Role::Admin),
            "a new password lifts the lockout"
        );
        assert_eq!(users.role_of("asha"), Some(Role::Admin));
        users.remove("asha").unwrap();
        assert_eq!(users.role_of("asha"), None);
        assert_eq!(users.verify("asha", "new password"), Err(LoginError::Wrong));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "users file readable by others: {mode:o}");
        }
    }

    #[test]
    fn the_dummy_hash_parses() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }
}

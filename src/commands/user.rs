//! `adpulse user add|passwd|remove|list`: edit the action center's users file (the path is
//! `actions.web.users_file` of the configuration). Passwords come from `--password-file` (`-`
//! for standard input), or are generated and printed once with `--generate`; they are stored
//! as argon2id hashes only.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use crate::actions::engine::{Role, Users, UsersError};

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Add a user.
    Add {
        name: String,
        /// viewer, approver or admin.
        #[arg(long, default_value = "viewer")]
        role: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Set a user's password (and, with --role, their role).
    Passwd {
        name: String,
        #[arg(long)]
        role: Option<String>,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Remove a user.
    Remove { name: String },
    /// List users and roles.
    List,
}

#[derive(Debug, clap::Args)]
pub struct PasswordArgs {
    /// Read the password from this file (`-`: the first line of standard input).
    #[arg(long, conflicts_with = "generate")]
    pub password_file: Option<PathBuf>,
    /// Generate a random password and print it once.
    #[arg(long)]
    pub generate: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum UserCommandError {
    #[error(transparent)]
    Users(#[from] UsersError),
    #[error("cannot read the password from {what}: {source}")]
    Password {
        what: String,
        source: std::io::Error,
    },
    #[error(
        "give the password with --password-file FILE (or - for standard input), or use --generate"
    )]
    NoPassword,
    #[error("cannot write the answer: {0}")]
    Output(std::io::Error),
}

/// A random password: 20 letters and digits (about 119 bits).
pub fn generate_password() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

fn password(p: &PasswordArgs, stdin: &mut dyn BufRead) -> Result<(String, bool), UserCommandError> {
    if p.generate {
        return Ok((generate_password(), true));
    }
    let Some(file) = &p.password_file else {
        return Err(UserCommandError::NoPassword);
    };
    let text = if file.as_os_str() == "-" {
        let mut line = String::new();
        stdin
            .read_line(&mut line)
            .map_err(|source| UserCommandError::Password {
                what: "standard input".into(),
                source,
            })?;
        line
    } else {
        std::fs::read_to_string(file).map_err(|source| UserCommandError::Password {
            what: file.display().to_string(),
            source,
        })?
    };
    Ok((text.trim_end_matches(['\r', '\n']).to_string(), false))
}

/// Run one command on the users file at `path`.
pub fn run(
    cmd: &UserCommand,
    path: &Path,
    stdin: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), UserCommandError> {
    // the lockout settings do not matter for editing
    let users = Users::new(path, 5, std::time::Duration::from_secs(60));
    let say =
        |out: &mut dyn Write, s: String| writeln!(out, "{s}").map_err(UserCommandError::Output);
    match cmd {
        UserCommand::Add {
            name,
            role,
            password: p,
        } => {
            let role: Role = role.parse()?;
            let (pw, generated) = password(p, stdin)?;
            users.add(name, role, &pw)?;
            say(
                out,
                format!("added {name} ({}) to {}", role.as_str(), path.display()),
            )?;
            if generated {
                say(out, format!("password: {pw}"))?;
            }
        }
        UserCommand::Passwd {
            name,
            role,
            password: p,
        } => {
            let role = role.as_deref().map(str::parse::<Role>).transpose()?;
            let (pw, generated) = password(p, stdin)?;
            users.passwd(name, &pw, role)?;
            say(out, format!("password of {name} changed"))?;
            if generated {
                say(out, format!("password: {pw}"))?;
            }
        }
        UserCommand::Remove { name } => {
            users.remove(name)?;
            say(out, format!("removed {name}"))?;
        }
        UserCommand::List => {
            for u in users.list()? {
                say(out, format!("{}\t{}", u.name, u.role.as_str()))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_generate_list_passwd_from_stdin_remove() {
        let (_dir, path) = crate::persist::temp_path("users.toml");
        let mut out = Vec::new();
        let gen_args = PasswordArgs {
            password_file: None,
            generate: true,
        };
        run(
            &UserCommand::Add {
                name: "asha".into(),
                role: "admin".into(),
                password: gen_args,
            },
            &path,
            &mut std::io::empty(),
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        let pw = text
            .lines()
            .find_map(|l| l.strip_prefix("password: "))
            .unwrap();
        assert_eq!(pw.len(), 20);
        let users = Users::new(&path, 5, std::time::Duration::from_secs(60));
        assert_eq!(users.verify("asha", pw).unwrap().role, Role::Admin);
        let mut stdin = std::io::Cursor::new(b"a new long password\nignored\n".to_vec());
        run(
            &UserCommand::Passwd {
                name: "asha".into(),
                role: Some("viewer".into()),
                password: PasswordArgs {
                    password_file: Some("-".into()),
                    generate: false,
                },
            },
            &path,
            &mut stdin,
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!(
            users.verify("asha", "a new long password").unwrap().role,
            Role::Viewer
        );
        let mut out = Vec::new();
        run(&UserCommand::List, &path, &mut std::io::empty(), &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "asha\tviewer\n");
        let err = run(
            &UserCommand::Add {
                name: "ravi".into(),
                role: "boss".into(),
                password: PasswordArgs {
                    password_file: None,
                    generate: true,
                },
            },
            &path,
            &mut std::io::empty(),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("viewer, approver or admin"),
            "{err}"
        );
        run(
            &UserCommand::Remove {
                name: "asha".into(),
            },
            &path,
            &mut std::io::empty(),
            &mut Vec::new(),
        )
        .unwrap();
        assert!(users.list().unwrap().is_empty());
    }
}

//! Argon2id password hashing for account and access passwords, off the async threads.

use std::sync::OnceLock;

use tokio::sync::Semaphore;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use super::error::ApiError;

/// Minimum length of an account password, in characters.
pub const MIN_ACCOUNT_PASSWORD_CHARS: usize = 12;

/// Maximum length of any password, in bytes, so hashing cost stays bounded.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Maximum number of Argon2id computations at once. Each takes 19 MiB and tens of
/// milliseconds of one core, so a flood of logins queues here instead of exhausting
/// memory on the blocking thread pool.
const MAX_CONCURRENT_HASHES: usize = 4;

/// Waits for a turn to run one Argon2id computation.
async fn turn() -> tokio::sync::SemaphorePermit<'static> {
    static TURNS: Semaphore = Semaphore::const_new(MAX_CONCURRENT_HASHES);
    TURNS
        .acquire()
        .await
        .expect("the semaphore is never closed")
}

/// Hashes a password with Argon2id and the crate's default cost (19 MiB, 2 passes),
/// returning the PHC string.
///
/// # Errors
///
/// [`ApiError::Internal`] if hashing fails, which only a broken parameter set causes.
pub async fn hash(password: String) -> Result<String, ApiError> {
    let _turn = turn().await;
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .map_err(|error| ApiError::Internal {
            message: format!("password hashing task failed: {error}"),
        })?
}

/// Hashes a password on the current thread; see [`hash`].
///
/// # Errors
///
/// As [`hash`].
pub fn hash_blocking(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| ApiError::Internal {
            message: format!("password hashing failed: {error}"),
        })
}

/// Checks `password` against a PHC string. With `None` it checks against a fixed
/// dummy hash and returns false, so an unknown login takes as long as a wrong password.
pub async fn verify(password: String, phc: Option<String>) -> bool {
    let _turn = turn().await;
    let checked = tokio::task::spawn_blocking(move || {
        let phc = phc.as_deref().unwrap_or_else(|| dummy_hash());
        verify_blocking(&password, phc) && phc != dummy_hash()
    })
    .await;
    checked.unwrap_or(false)
}

/// Checks `password` against a PHC string on the calling thread; false for a PHC
/// string that does not parse.
pub fn verify_blocking(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        hash_blocking("consign dummy password for unknown logins")
            .expect("hashing a fixed password succeeds")
    })
}

/// Checks the length of a new account password.
///
/// # Errors
///
/// [`ApiError::Invalid`] on `field` when it is too short or too long.
pub fn check_account_password(field: &str, password: &str) -> Result<(), ApiError> {
    let chars = password.chars().count();
    if password.trim().is_empty() {
        return Err(ApiError::invalid(
            field,
            format!("{field} is blank; choose a real password"),
        ));
    }
    if chars < MIN_ACCOUNT_PASSWORD_CHARS {
        return Err(ApiError::invalid(
            field,
            format!(
                "{field} is too short ({chars} of at least {MIN_ACCOUNT_PASSWORD_CHARS} \
                 characters); choose a longer one"
            ),
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::invalid(
            field,
            format!("{field} is longer than {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_verifies_only_the_right_password() {
        let phc = hash("correct horse battery".to_owned()).await.unwrap();

        assert!(phc.starts_with("$argon2id$"));
        assert!(verify("correct horse battery".to_owned(), Some(phc.clone())).await);
        assert!(!verify("wrong horse battery".to_owned(), Some(phc)).await);
        assert!(!verify("anything".to_owned(), None).await);
    }
}

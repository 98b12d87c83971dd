//! Passwords kept as bcrypt hashes (`$2b$` from Python's bcrypt, `$2a$`,
//! `$2y$` from `htpasswd -B`, and `junction passwd`'s) log in over NATS, MQTT
//! and HTTP Basic; a wrong password is refused on each.

use crate::common::{get_as, tenant};
use crate::support::{V4, v4_options};
use junction::engine::User;
use junction_conformance::mqtt_broker_with;
use std::process::Command;

fn python_bcrypt(password: &str, prefix: &str) -> String {
    let python = std::env::var("NATS_PY_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .args([
            "-c",
            "import bcrypt,sys; print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(rounds=4, prefix=sys.argv[2].encode())).decode())",
            password,
            prefix,
        ])
        .output()
        .expect("python with bcrypt (scripts/test installs it in NATS_PY_PYTHON's virtualenv)");
    assert!(
        out.status.success(),
        "python bcrypt: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn htpasswd(user: &str, password: &str) -> String {
    let out = Command::new("htpasswd")
        .args(["-nbB", "-C", "4", user, password])
        .output()
        .expect("htpasswd (apache2-utils; scripts/test installs it)");
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    line.trim()
        .split_once(':')
        .map(|(_, h)| h.to_string())
        .expect("user:hash")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashes_from_python_htpasswd_and_junction_log_in() {
    let users = vec![
        ("py2b", python_bcrypt("secret-b", "2b"), "secret-b"),
        ("py2a", python_bcrypt("secret-a", "2a"), "secret-a"),
        ("apache", htpasswd("apache", "secret-y"), "secret-y"),
        (
            "ours",
            junction::engine::auth::hash_password("secret-j", 4).unwrap(),
            "secret-j",
        ),
    ];
    assert!(users[0].1.starts_with("$2b$"), "{}", users[0].1);
    assert!(users[1].1.starts_with("$2a$"), "{}", users[1].1);
    assert!(users[2].1.starts_with("$2y$"), "{}", users[2].1);
    let configured: Vec<User> = users
        .iter()
        .map(|(u, h, _)| User::new(*u, h.clone()))
        .collect();
    let b = mqtt_broker_with(move |c| {
        let (first, rest) = configured.split_at(2);
        c.auth.users = first.to_vec();
        // Hashes work for tenants' users too.
        let mut t = tenant("hashed", &[]);
        t.users = rest.to_vec();
        c.tenants = vec![t];
    })
    .await;
    for (user, _, password) in &users {
        async_nats::ConnectOptions::with_user_and_password(user.to_string(), password.to_string())
            .connect(b.nats_url())
            .await
            .unwrap_or_else(|e| panic!("NATS login as {user}: {e}"));
        let wrong =
            async_nats::ConnectOptions::with_user_and_password(user.to_string(), "nope".into())
                .connect(b.nats_url())
                .await;
        assert!(wrong.is_err(), "a wrong password logs in as {user}");

        let mut o = v4_options(&b, &format!("mqtt-{user}"));
        o.set_credentials(*user, *password);
        V4::connect(o).await;
        let mut o = v4_options(&b, &format!("mqtt-bad-{user}"));
        o.set_credentials(*user, "nope");
        let err = V4::try_connect(o).await.err().expect("refused");
        assert!(err.contains("BadUserNamePassword"), "{err}");

        let (status, _) = get_as(&b, user, password, "/v1/stations").await;
        assert_eq!(status, 200, "HTTP Basic as {user}");
        let (status, _) = get_as(&b, user, "nope", "/v1/stations").await;
        assert_eq!(status, 401, "HTTP Basic with a wrong password as {user}");
    }
}

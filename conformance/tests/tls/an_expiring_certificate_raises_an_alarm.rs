//! The certificate-expiry self-check: a server certificate that expires within
//! `tls.expiry_warning` (30 days by default) raises the
//! `tls_certificate_expiring` alarm once (an `alarm_raised` event, and
//! `junction_alarm_active{name="tls_certificate_expiring"} 1` in `/metrics`);
//! a renewed certificate written in place clears it, without a restart.

use crate::certs::Pki;
use junction_api::Monitor;
use junction_conformance::broker_with;
use std::time::{Duration, SystemTime};

/// Makes the certificate expire `days` from now.
fn expire_in_days(p: &mut rcgen::CertificateParams, days: u64) {
    let at = SystemTime::now() + Duration::from_secs(days * 86400);
    let text = humantime::format_rfc3339_seconds(at).to_string();
    let ymd: Vec<i32> = text[..10].split('-').map(|p| p.parse().unwrap()).collect();
    p.not_after = rcgen::date_time_ymd(ymd[0], ymd[1] as u8, ymd[2] as u8);
}

async fn alarm_gauge(b: &junction_conformance::TestBroker) -> String {
    let text = reqwest::get(format!("{}/metrics", b.http_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with("junction_alarm_active{name=\"tls_certificate_expiring\"}"))
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_certificate_raises_the_alarm_and_a_renewed_one_clears_it() {
    let pki = Pki::new();
    let (cert, key) = pki
        .ca
        .issue_with("junction", &["127.0.0.1", "localhost"], false, |p| {
            expire_in_days(p, 2)
        });
    pki.files.write("server.key", &key);
    pki.files.write("server.pem", &cert);
    let b = broker_with(|c| pki.configure(c)).await;
    let engine = b.running.engine().clone();
    let kinds = |kind: &str| {
        engine
            .events(
                &junction_api::TenantId::default_tenant(),
                &junction_api::EventFilter {
                    limit: 1000,
                    ..Default::default()
                },
            )
            .into_iter()
            .filter(|e| e.kind.as_str() == kind)
            .map(|e| e.message)
            // Only this alarm's (another self-check may raise its own).
            .filter(|m| m.starts_with("tls_certificate_expiring"))
            .collect::<Vec<_>>()
    };
    crate::support::within("the alarm", async {
        while kinds("alarm_raised").is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let raised = kinds("alarm_raised");
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert!(
        raised[0].starts_with("tls_certificate_expiring: the certificate in ")
            && raised[0].contains("server.pem expires at"),
        "{raised:?}"
    );
    assert!(
        alarm_gauge(&b).await.ends_with(" 1"),
        "{}",
        alarm_gauge(&b).await
    );

    // Renewed in place (the default validity: far in the future).
    let (cert, key) = pki.ca.issue("junction", &["127.0.0.1", "localhost"], false);
    pki.files.write("server.key", &key);
    pki.files.write("server.pem", &cert);
    crate::support::within("the alarm cleared", async {
        while kinds("alarm_cleared").is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(kinds("alarm_raised").len(), 1, "raised once");
    assert!(
        alarm_gauge(&b).await.ends_with(" 0"),
        "{}",
        alarm_gauge(&b).await
    );
}

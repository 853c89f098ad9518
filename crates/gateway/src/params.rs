//! Request parameters of read routes, with the discipline that keeps enforcement unambiguous.
//!
//! Parameters may come from the URL query or an `application/x-www-form-urlencoded` body. A
//! security-relevant parameter (`query`, `match[]`) present in both places, or `query` given
//! twice, is refused: backends disagree on which copy wins, so the gateway never lets them choose.
//! The forwarded request is re-encoded from what was parsed here, so the upstream reads exactly
//! the enforced values.

use whizard_core::enforcement::{EnforceError, TenantMatcher};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParamError {
    #[error("parameter {0:?} is given both in the URL and in the form body")]
    Duplicated(&'static str),
    #[error("parameter \"query\" is given more than once")]
    RepeatedQuery,
    #[error("missing parameter \"query\"")]
    MissingQuery,
}

/// Decoded parameters in the order a Go backend's `r.Form` has them: body first, then URL.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn parse(url_query: Option<&str>, form_body: Option<&[u8]>) -> Result<Params, ParamError> {
        let url: Vec<(String, String)> = url_query
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let body: Vec<(String, String)> = form_body
            .map(|b| form_urlencoded::parse(b).into_owned().collect())
            .unwrap_or_default();
        for key in ["query", "match[]"] {
            let in_url = url.iter().any(|(k, _)| k == key);
            let in_body = body.iter().any(|(k, _)| k == key);
            if in_url && in_body {
                return Err(ParamError::Duplicated(key));
            }
        }
        let mut pairs = body;
        pairs.extend(url);
        if pairs.iter().filter(|(k, _)| k == "query").count() > 1 {
            return Err(ParamError::RepeatedQuery);
        }
        Ok(Params { pairs })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Rewrites `query` with PromQL enforcement. A missing `query` is refused.
    #[cfg(test)]
    pub fn enforce_query(&mut self, tenant: &TenantMatcher) -> Result<(), RewriteError> {
        self.rewrite_query(|q| whizard_core::enforcement::enforce_query(q, tenant))
    }

    /// Replaces `query` with `rewrite(query)`. A missing `query` is refused.
    pub fn rewrite_query(
        &mut self,
        rewrite: impl FnOnce(&str) -> Result<String, EnforceError>,
    ) -> Result<(), RewriteError> {
        let slot = self
            .pairs
            .iter_mut()
            .find(|(k, _)| k == "query")
            .ok_or(RewriteError::Param(ParamError::MissingQuery))?;
        slot.1 = rewrite(&slot.1)?;
        Ok(())
    }

    /// Enforces every `match[]`, adding one when there is none (uncached).
    #[cfg(test)]
    pub fn enforce_match(&mut self, tenant: &TenantMatcher) -> Result<(), RewriteError> {
        self.enforce_match_with(tenant, |s| {
            whizard_core::enforcement::enforce_match_selector(s, tenant)
        })
    }

    /// Replaces every `match[]` with `rewrite(selector)`, adding the tenant's own selector
    /// when there is none.
    pub fn enforce_match_with(
        &mut self,
        tenant: &TenantMatcher,
        mut rewrite: impl FnMut(&str) -> Result<String, EnforceError>,
    ) -> Result<(), RewriteError> {
        let mut seen = false;
        for (k, v) in self.pairs.iter_mut() {
            if k == "match[]" {
                *v = rewrite(v)?;
                seen = true;
            }
        }
        if !seen {
            self.pairs.push(("match[]".to_string(), tenant.selector()));
        }
        Ok(())
    }

    /// `application/x-www-form-urlencoded` text of all parameters.
    pub fn encode(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.pairs {
            s.append_pair(k, v);
        }
        s.finish()
    }
}

/// A Prometheus API time: Unix seconds (with fraction) or RFC 3339.
pub fn parse_time(s: &str) -> Option<f64> {
    if let Ok(v) = s.parse::<f64>() {
        return v.is_finite().then_some(v);
    }
    // RFC 3339: YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, sec) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    let mut rest = &s[19..];
    let mut frac = 0.0;
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.bytes().take_while(u8::is_ascii_digit).count();
        frac = format!("0.{}", &r[..digits]).parse().ok()?;
        rest = &r[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o[1..3].parse::<i64>().ok()? * 3600 + o[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // Days from civil date (proleptic Gregorian), Howard Hinnant's algorithm.
    let (y, m) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + sec - offset) as f64 + frac)
}

#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error(transparent)]
    Param(#[from] ParamError),
    #[error(transparent)]
    Enforce(#[from] EnforceError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[&str]) -> TenantMatcher {
        TenantMatcher::new("tenant_id", v.iter().copied()).unwrap()
    }

    #[test]
    fn url_and_body_duplicates_are_refused() {
        assert_eq!(
            Params::parse(Some("query=up"), Some(b"query=down")).unwrap_err(),
            ParamError::Duplicated("query")
        );
        assert_eq!(
            Params::parse(Some("match[]=up"), Some(b"match%5B%5D=x")).unwrap_err(),
            ParamError::Duplicated("match[]")
        );
        assert_eq!(
            Params::parse(Some("query=up&query=down"), None).unwrap_err(),
            ParamError::RepeatedQuery
        );
        assert_eq!(
            Params::parse(None, Some(b"query=up&query=down")).unwrap_err(),
            ParamError::RepeatedQuery
        );
        // Non-security parameters may repeat; several match[] in one place are fine.
        let p = Params::parse(Some("start=1&match[]=a&match[]=b"), Some(b"start=2")).unwrap();
        assert_eq!(p.get("start"), Some("2"), "body first, as Go's r.Form");
    }

    #[test]
    fn query_is_rewritten_and_reencoded() {
        let mut p = Params::parse(Some("query=sum(rate(x%5B5m%5D))&time=1+2"), None).unwrap();
        p.enforce_query(&t(&["a"])).unwrap();
        let enc = p.encode();
        let back: Vec<(String, String)> = form_urlencoded::parse(enc.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(back[0].0, "query");
        assert!(back[0].1.contains(r#"tenant_id="a""#), "{}", back[0].1);
        assert_eq!(back[1], ("time".into(), "1 2".into()));
        let mut missing = Params::parse(Some("time=1"), None).unwrap();
        assert!(matches!(
            missing.enforce_query(&t(&["a"])),
            Err(RewriteError::Param(ParamError::MissingQuery))
        ));
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("1700000000"), Some(1_700_000_000.0));
        assert_eq!(parse_time("1700000000.5"), Some(1_700_000_000.5));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Some(1_700_000_000.0));
        assert_eq!(
            parse_time("2023-11-14T23:13:20.25+01:00"),
            Some(1_700_000_000.25)
        );
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0.0));
        for bad in ["", "now", "2023-11-14", "2023-11-14T22:13:20", "NaN", "inf"] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn match_is_added_when_absent_and_enforced_when_present() {
        let mut p = Params::parse(Some("start=1"), None).unwrap();
        p.enforce_match(&t(&["a", "b"])).unwrap();
        let m: Vec<_> = p.pairs.iter().filter(|(k, _)| k == "match[]").collect();
        assert_eq!(m.len(), 1);
        assert!(m[0].1.contains("tenant_id=~"), "{}", m[0].1);
        let mut p = Params::parse(None, Some(b"match[]=up&match[]=%7Bjob%3D%22x%22%7D")).unwrap();
        p.enforce_match(&t(&["a"])).unwrap();
        let m: Vec<_> = p.pairs.iter().filter(|(k, _)| k == "match[]").collect();
        assert_eq!(m.len(), 2);
        assert!(m.iter().all(|(_, v)| v.contains(r#"tenant_id="a""#)));
    }
}

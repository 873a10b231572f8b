//! Image references → short image name (the profile key) and tag (the
//! profile version): `registry.example.com:5000/team/cws-webapp:v2@sha256:…`
//! → `cws-webapp` / `v2`.

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    /// Last path component without tag or digest.
    pub short_name: String,
    /// The reference without tag or digest, as written
    /// (`registry.example.com:5000/team/cws-webapp`).
    pub repository: String,
    /// The tag; `latest` when none is given (and no digest pins it).
    pub tag: String,
}

/// Why an image reference is not usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    /// Empty reference.
    #[error("empty image reference")]
    Empty,
    /// A character not allowed in image references.
    #[error("image reference {reference:?} has an invalid character {ch:?}")]
    InvalidChar {
        /// The reference.
        reference: String,
        /// The character.
        ch: char,
    },
    /// No name before the tag.
    #[error("image reference {0:?} has no name")]
    NoName(String),
}

impl ImageRef {
    /// Parse an image reference as written in a pod spec.
    pub fn parse(reference: &str) -> Result<Self, ImageError> {
        let r = reference.trim();
        if r.is_empty() {
            return Err(ImageError::Empty);
        }
        if let Some(ch) = r.chars().find(|c| !(c.is_ascii_alphanumeric() || "._-/:@+".contains(*c))) {
            return Err(ImageError::InvalidChar { reference: r.to_owned(), ch });
        }
        let (name_tag, digest) = match r.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (r, None),
        };
        let last = name_tag.rsplit('/').next().unwrap_or(name_tag);
        // The tag's colon is in the last component (a registry port's is not).
        let repository = &name_tag[..name_tag.len() - last.len() + last.find(':').unwrap_or(last.len())];
        let (name, tag) = match last.split_once(':') {
            Some((n, t)) if !t.is_empty() => (n, t.to_owned()),
            Some((n, _)) => (n, "latest".to_owned()),
            None => (last, digest.map_or_else(|| "latest".to_owned(), |d| d.chars().take(19).collect())),
        };
        if name.is_empty() {
            return Err(ImageError::NoName(r.to_owned()));
        }
        Ok(Self { short_name: name.to_ascii_lowercase(), repository: repository.to_owned(), tag })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> (String, String) {
        let r = ImageRef::parse(s).expect(s);
        (r.short_name, r.tag)
    }

    #[test]
    fn short_names_and_tags() {
        let cases = [
            ("registry.example.com:5000/team/cws-webapp:v2@sha256:abcdef", ("cws-webapp", "v2")),
            ("cws-webapp", ("cws-webapp", "latest")),
            ("cws-webapp:1.2.3", ("cws-webapp", "1.2.3")),
            ("docker.io/library/nginx:1.27-alpine", ("nginx", "1.27-alpine")),
            ("localhost:5000/nginx", ("nginx", "latest")),
            ("ghcr.io/org/sub/team/app:latest", ("app", "latest")),
            ("Quay.io/Org/MyApp:V1", ("myapp", "V1")),
            ("nginx:", ("nginx", "latest")),
        ];
        for (input, (name, tag)) in cases {
            assert_eq!(p(input), (name.to_owned(), tag.to_owned()), "{input}");
        }
        assert_eq!(p("nginx@sha256:0123456789abcdef0123").1, "sha256:0123456789ab");
    }

    #[test]
    fn repositories_keep_registry_and_path() {
        for (input, repo) in [
            ("registry.example.com:5000/team/cws-webapp:v2@sha256:abcdef", "registry.example.com:5000/team/cws-webapp"),
            ("localhost:5000/nginx", "localhost:5000/nginx"),
            ("nginx:1.27", "nginx"),
            ("nginx@sha256:0123", "nginx"),
            ("Quay.io/Org/MyApp:V1", "Quay.io/Org/MyApp"),
            ("nginx:", "nginx"),
        ] {
            assert_eq!(ImageRef::parse(input).unwrap().repository, repo, "{input}");
        }
    }

    #[test]
    fn bad_references() {
        assert_eq!(ImageRef::parse(""), Err(ImageError::Empty));
        assert!(matches!(ImageRef::parse("a b"), Err(ImageError::InvalidChar { ch: ' ', .. })));
        assert!(matches!(ImageRef::parse("registry/:v1"), Err(ImageError::NoName(_))));
        assert!(matches!(ImageRef::parse("x/..\n/a"), Err(ImageError::InvalidChar { .. })));
    }
}

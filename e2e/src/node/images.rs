//! Container image to local binary mapping.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{Error, Result};

/// Local binaries that stand in for container images, keyed by image name (the last path component of
/// the image reference without tag or digest).
#[derive(Debug, Clone, Default)]
pub struct ImageMap {
    binaries: BTreeMap<String, PathBuf>,
}

impl ImageMap {
    /// Parses `NAME=PATH` entries.
    pub fn parse(entries: &[String]) -> Result<Self> {
        let mut binaries = BTreeMap::new();
        for entry in entries {
            let (name, path) = entry
                .split_once('=')
                .ok_or_else(|| Error::InvalidSpec(format!("image mapping {entry:?} is not NAME=PATH")))?;
            binaries.insert(name.to_owned(), PathBuf::from(path));
        }
        Ok(Self { binaries })
    }

    /// Returns the binary that runs `image`.
    pub fn binary_for(&self, image: &str) -> Result<&PathBuf> {
        self.binaries
            .get(image_name(image))
            .ok_or_else(|| Error::ImageNotMapped {
                image: image.to_owned(),
            })
    }
}

/// Returns the image's last path component without tag or digest:
/// `ghcr.io/socketfleet/gateway:0.1.0@sha256:…` → `gateway`.
pub fn image_name(image: &str) -> &str {
    let without_digest = image.split_once('@').map_or(image, |(name, _)| name);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split_once(':').map_or(last, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_name_strips_registry_tag_and_digest() {
        assert_eq!(image_name("ghcr.io/socketfleet/gateway:0.1.0"), "gateway");
        assert_eq!(image_name("ghcr.io/socketfleet/operator"), "operator");
        assert_eq!(image_name("localhost:5000/gateway:dev@sha256:abc"), "gateway");
        assert_eq!(image_name("gateway"), "gateway");
    }

    #[test]
    fn unmapped_image_is_an_error() {
        let map = ImageMap::parse(&["gateway=/bin/true".to_owned()]).unwrap();
        assert_eq!(
            map.binary_for("ghcr.io/socketfleet/gateway:1").unwrap(),
            &PathBuf::from("/bin/true")
        );
        assert!(matches!(
            map.binary_for("nginx:1.27"),
            Err(Error::ImageNotMapped { .. })
        ));
    }
}

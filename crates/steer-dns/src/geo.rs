//! Region by geolocation, for clients outside every configured client
//! network: country first, then continent, from a MaxMind database.
//!
//! The database is opened once per settings change (not per plan) and
//! shared by every view; a lookup borrows strings from the database and
//! allocates nothing.

use std::{collections::HashMap, net::IpAddr};

use maxminddb::{PathElement, Reader};
use steer_types::{GeoSettings, RegionId};

use crate::view::ViewError;

pub(crate) struct GeoMap {
    pub(crate) settings: GeoSettings,
    reader: Reader<Vec<u8>>,
    countries: HashMap<String, RegionId>,
    continents: HashMap<String, RegionId>,
}

impl GeoMap {
    pub(crate) fn open(settings: &GeoSettings) -> Result<Self, ViewError> {
        let reader = Reader::open_readfile(&settings.mmdb).map_err(|e| ViewError::Geo {
            path: settings.mmdb.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            settings: settings.clone(),
            reader,
            countries: settings.countries.clone().into_iter().collect(),
            continents: settings.continents.clone().into_iter().collect(),
        })
    }

    /// The region for `addr`, the prefix length of the database network
    /// that decided it, and what matched (for explain).
    pub(crate) fn region(&self, addr: IpAddr) -> Option<(&RegionId, u8, &'static str)> {
        let found = self.reader.lookup(addr).ok()?;
        if !found.has_data() {
            return None;
        }
        let prefix = found.network().ok()?.prefix();
        let code = |path: &[PathElement<'_>]| found.decode_path::<&str>(path).ok().flatten();
        if let Some(region) = code(&[PathElement::Key("country"), PathElement::Key("iso_code")])
            .and_then(|c| self.countries.get(c))
        {
            return Some((region, prefix, "country"));
        }
        code(&[PathElement::Key("continent"), PathElement::Key("code")])
            .and_then(|c| self.continents.get(c))
            .map(|region| (region, prefix, "continent"))
    }
}

//! The daily call quota's ledger: every replica draws a portal's calls of a
//! day from the store, a few at a time, so the quota holds across replicas.
use super::*;

impl AssociationService {
    /// Gives out up to `want` of `portal`'s calls of UTC `day`, never past
    /// `max` in all: (calls given, the day's calls given out now). Near the
    /// end of the quota it gives what still fits.
    pub async fn draw_daily_calls(
        &self,
        portal: i64,
        day: u64,
        want: u32,
        max: u32,
    ) -> ServiceResult<(u32, u32)> {
        let day = i64::try_from(day).unwrap_or(i64::MAX);
        let mut want = want.min(max);
        while want > 0 {
            if let Some(given) = self.store.draw_daily_calls(portal, day, want, max).await? {
                return Ok((want, given));
            }
            want /= 2;
        }
        Ok((0, max))
    }

    /// Forgets the daily call counts of the days before `day`.
    pub async fn prune_daily_calls(&self, day: u64) -> ServiceResult<()> {
        let day = i64::try_from(day).unwrap_or(i64::MAX);
        Ok(self.store.prune_daily_calls(day).await?)
    }
}

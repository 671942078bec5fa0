"""Pure numpy detection of walk-through drive passes: quality, passes, background, judging."""

"""Everything the explorer page computes, as plain functions testable without a browser.
Never imports streamlit."""

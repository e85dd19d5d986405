"""The Streamlit SOC console: views only, no business logic."""

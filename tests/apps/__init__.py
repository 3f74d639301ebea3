"""Small apps served by real servers (uvicorn, gunicorn) in the integration tests."""

"""The portal: the web UI the gateway serves at /ui (app.py), its sign-in (session.py), and what it
reads beyond the gateway's API (catalog.py, overview.py); its pages are the files under static/."""

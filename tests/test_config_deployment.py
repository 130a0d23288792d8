"""Deployment settings: persistent storage at ``/data`` becomes the data dir's default, and a
Space without it is known to lose its data on restart."""

from __future__ import annotations

import pytest

from depthweb import config


@pytest.fixture
def fake_data_root(tmp_path, monkeypatch):
    root = tmp_path / "data-volume"
    monkeypatch.setattr(config, "PERSISTENT_ROOT", root)
    monkeypatch.delenv("DEPTHWEB_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    return root


def test_a_writable_data_volume_holds_the_data_by_default(fake_data_root, monkeypatch):
    assert config.Settings().data_dir == fake_data_root.parent / "xdg" / "depthweb"  # absent
    fake_data_root.mkdir()
    assert config.persistent_storage(fake_data_root)
    settings = config.Settings()
    assert settings.data_dir == fake_data_root / "depthweb"
    assert settings.resolved_database_url.endswith(f"{fake_data_root}/depthweb/depthweb.sqlite")
    monkeypatch.setenv("SYSTEM", "spaces")
    assert not settings.data_lost_on_restart
    explicit = config.Settings(data_dir=fake_data_root.parent / "elsewhere")
    assert explicit.data_lost_on_restart  # a Space keeping its data outside the volume


def test_a_file_where_the_volume_would_be_is_not_used(fake_data_root):
    fake_data_root.write_text("not a folder")
    assert not config.persistent_storage(fake_data_root)
    assert config.Settings().data_dir == fake_data_root.parent / "xdg" / "depthweb"


def test_only_a_space_warns_about_losing_data(fake_data_root, monkeypatch):
    monkeypatch.delenv("SYSTEM", raising=False)
    assert not config.Settings().data_lost_on_restart  # a local machine keeps its home dir
    monkeypatch.setenv("SYSTEM", "spaces")
    assert config.Settings().data_lost_on_restart  # no /data on this Space


def test_admins_and_the_default_role_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("DEPTHWEB_ADMINS", "alice, bob,,")
    monkeypatch.setenv("DEPTHWEB_OAUTH_DEFAULT_ROLE", "reviewer")
    settings = config.Settings()
    assert settings.admin_names == {"alice", "bob"}
    assert settings.oauth_default_role == "reviewer"
    monkeypatch.setenv("DEPTHWEB_OAUTH_DEFAULT_ROLE", "admin")  # never everyone an admin
    with pytest.raises(ValueError, match="oauth_default_role"):
        config.Settings()

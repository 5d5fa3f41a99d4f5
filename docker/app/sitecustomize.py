"""Run by every Python started in a torchenv image (/opt/torchenv is on PYTHONPATH): points
torch's compiled-code caches at a place they can be loaded from (torchenv_app.codecache),
and where there is none, makes torch.utils.cpp_extension's loads refuse in one line that
names the fix instead of failing inside the dynamic loader. It must never stop Python."""

try:
    from torchenv_app import codecache

    codecache.refuse_loads_where_needed()
except Exception:
    pass

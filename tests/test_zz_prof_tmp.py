import time
from tests.test_tenancy_e2e import make_party, revoked_key_of
import httpx

def test_prof(service, fake_openai):
    t=time.monotonic()
    tenant = service.new_tenant(); print("tenant", time.monotonic()-t)
    from tests.test_tenancy_e2e import setup_party
    with httpx.Client(base_url=service.running.base_url, timeout=60) as c:
        t=time.monotonic(); p=setup_party(c, tenant, fake_openai); print("setup", time.monotonic()-t)

// A local import, to prove that esbuild bundles relative modules.
import http from 'k6/http';

export function postJSON(url, body, tags) {
  return http.post(url, JSON.stringify(body), {
    headers: { 'Content-Type': 'application/json', 'X-Test': 'yes' },
    tags: tags,
  });
}

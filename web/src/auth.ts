// The token: taken once from ?token= (then removed from the address bar), else from
// localStorage, else asked for. It is sent as a Bearer header on fetch and as ?token= on
// websockets (browsers can't set headers there), and never written to the console.

const TOKEN_KEY = "hearth_token";

export function tokenFromUrl(): void {
  const url = new URL(window.location.href);
  const token = url.searchParams.get("token");
  if (token === null) return;
  if (token) localStorage.setItem(TOKEN_KEY, token);
  url.searchParams.delete("token");
  history.replaceState(history.state, "", url.pathname + url.search + url.hash);
}

export function storedToken(): string | null {
  return localStorage.getItem(TOKEN_KEY);
}

export function storeToken(token: string): void {
  localStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken(): void {
  localStorage.removeItem(TOKEN_KEY);
}

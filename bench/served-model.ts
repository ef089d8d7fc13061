// The name of the model a target server serves, for a bench's report: a remote server's is not
// known in advance, and a report must say which model its figures were measured with.

/** The first model `GET /v1/models` lists, or 'unknown' when the server does not answer it. */
export async function servedModelName(httpUrl: string, headers: Record<string, string>): Promise<string> {
  try {
    const res = await fetch(`${httpUrl}/v1/models`, { headers, signal: AbortSignal.timeout(5000) });
    const body = (await res.json()) as { models?: { name?: string }[] };
    return body.models?.[0]?.name ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

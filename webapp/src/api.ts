// REST calls to the orchestrator, with the bearer token when one is set.

export interface DocumentInfo {
  id: string;
  title: string;
  source: string;
  chunks: number;
  words: number;
  created: number;
}

export interface Listing {
  documents: DocumentInfo[];
  chunks: number;
  search: string;
  limit: number;
}

export class AuthRequired extends Error {}

export class Api {
  constructor(public token: string | null) {}

  private headers(): Record<string, string> {
    return this.token ? { Authorization: `Bearer ${this.token}` } : {};
  }

  private async json<T>(response: Response): Promise<T> {
    if (response.status === 401) throw new AuthRequired("this server needs an access token");
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.detail ?? `request failed (${response.status})`);
    }
    return (await response.json()) as T;
  }

  async documents(): Promise<Listing> {
    return this.json<Listing>(await fetch("/v1/documents", { headers: this.headers() }));
  }

  async remove(id: string): Promise<void> {
    const response = await fetch(`/v1/documents/${encodeURIComponent(id)}`, {
      method: "DELETE",
      headers: this.headers(),
    });
    if (response.status === 401) throw new AuthRequired("this server needs an access token");
    if (!response.ok && response.status !== 404) throw new Error(`delete failed (${response.status})`);
  }

  /** Upload with progress (fetch cannot report upload progress; XMLHttpRequest can). */
  upload(file: File, onProgress: (fraction: number) => void): Promise<DocumentInfo> {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "/v1/documents");
      for (const [k, v] of Object.entries(this.headers())) xhr.setRequestHeader(k, v);
      xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
      xhr.onerror = () => reject(new Error("upload failed: server unreachable"));
      xhr.onload = () => {
        let body: { detail?: string; document?: DocumentInfo } = {};
        try {
          body = JSON.parse(xhr.responseText);
        } catch {
          /* not JSON */
        }
        if (xhr.status === 401) reject(new AuthRequired("this server needs an access token"));
        else if (xhr.status >= 400 || !body.document) reject(new Error(body.detail ?? `upload failed (${xhr.status})`));
        else resolve(body.document);
      };
      const form = new FormData();
      form.append("file", file);
      xhr.send(form);
    });
  }
}

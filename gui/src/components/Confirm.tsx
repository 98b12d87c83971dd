// A confirmation in a native modal <dialog> (focus trap and Escape come free).
import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';

interface Props {
  title: string;
  children: ComponentChildren;
  confirmLabel: string;
  /** When set, the user must type this to confirm. */
  typeToConfirm?: string;
  danger?: boolean;
  onConfirm: () => Promise<void> | void;
  onClose: () => void;
}

export function Confirm({ title, children, confirmLabel, typeToConfirm, danger, onConfirm, onClose }: Props) {
  const ref = useRef<HTMLDialogElement>(null);
  const [typed, setTyped] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  useEffect(() => {
    ref.current?.showModal();
  }, []);
  const ok = !typeToConfirm || typed === typeToConfirm;
  return (
    <dialog ref={ref} class="dialog" onClose={onClose} aria-labelledby="confirm-title">
      <form
        method="dialog"
        onSubmit={async (e) => {
          e.preventDefault();
          if (!ok) return;
          setBusy(true);
          try {
            await onConfirm();
            ref.current?.close();
          } catch (err) {
            setError((err as Error).message);
            setBusy(false);
          }
        }}
      >
        <h2 id="confirm-title">{title}</h2>
        <div>{children}</div>
        {typeToConfirm && (
          <label>
            Type <code>{typeToConfirm}</code> to confirm
            <input value={typed} onInput={(e) => setTyped(e.currentTarget.value)} autoFocus autocomplete="off" />
          </label>
        )}
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <div class="actions">
          <button type="button" onClick={() => ref.current?.close()}>
            Cancel
          </button>
          <button type="submit" class={danger ? 'danger' : 'primary'} disabled={!ok || busy}>
            {busy ? 'Working…' : confirmLabel}
          </button>
        </div>
      </form>
    </dialog>
  );
}
